"""Every bad argument to the CLI: exit status 2, one line on stderr, no traceback, nothing written."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from core.cli import main
from tests.conftest import STAMPS


@pytest.fixture
def world(tmp_path):
    """A tiny image folder, an empty one, a plain file, and files that look like checkpoints but are not."""
    imgs = tmp_path / "imgs" / "a"
    imgs.mkdir(parents=True)
    src = sorted(STAMPS.glob("*/*.png"))[0]
    (imgs / src.name).write_bytes(src.read_bytes())
    (tmp_path / "empty").mkdir()
    (tmp_path / "dir.npz").mkdir()
    (tmp_path / "bad_only").mkdir()
    (tmp_path / "bad_only" / "x.png").write_text("not an image")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "notes.pth").write_text("hello, not a checkpoint")
    with zipfile.ZipFile(tmp_path / "other.pth", "w") as z:  # a zip, but not a torch.save archive
        z.writestr("readme.txt", "hi")
    return tmp_path


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


CASES = {
    "batch-size -1": (["extract", "--batch-size", "-1"], "--batch-size: must be 1 or more"),
    "batch-size 0": (["extract", "--batch-size", "0"], "--batch-size: must be 1 or more"),
    "batch-size x": (["extract", "--batch-size", "x"], "whole number"),
    "size 0": (["extract", "--size", "0"], "--size: 0 px is outside"),
    "size 16000": (["extract", "--size", "16000"], "--size: 16000 px is outside"),
    "size -5": (["extract", "--size", "-5"], "outside"),
    "out under a file": (["export", "--out", "{w}/afile/x.npz"], "is a file"),
    "out a directory": (["export", "--out", "{w}/empty"], ".npz"),
    "out a directory.npz": (["export", "--out", "{w}/dir.npz"], "that is a folder"),
    "out no extension": (["export", "--out", "{w}/noext"], "ending in .npz"),
    "out .txt": (["export", "--out", "{w}/emb.txt"], "ending in .npz"),
    "ray out a file": (["extract", "--engine", "ray", "--out", "{w}/afile"], "that is a file, not a folder"),
    "cache a file": (["--cache", "{w}/afile", "extract"], "--cache"),
    "cache under a file": (["--cache", "{w}/afile/c", "extract"], "is a file"),
    "images missing": (["extract", "--images", "{w}/missing"], "no such folder"),
    "images a file": (["extract", "--images", "{w}/afile"], "not a folder"),
    "kinds unknown": (["extract", "--kinds", "embedding,pixels"], "unknown kind"),
    "checkpoint text": (["extract", "--backbone", "timm/resnet18@{w}/notes.pth"], "not a checkpoint file"),
    "checkpoint missing": (["extract", "--backbone", "timm/resnet18@{w}/nope.pth"], "not found"),
    "checkpoint a fifo": (["extract", "--backbone", "timm/resnet18@{w}/pipe.pth"], "not a regular file"),
    "export empty folder": (["export", "--images", "{w}/empty", "--out", "{w}/o.npz"], "no usable images"),
    "export only bad files": (["export", "--images", "{w}/bad_only", "--out", "{w}/o.npz"], "no usable images"),
    "unknown backbone": (["extract", "--backbone", "nope"], "Unknown backbone"),
    "test-size 2": (["evaluate", "--test-size", "2"], "between 0 and 1"),
    "shots 0": (["evaluate", "--shots", "0"], "must be 1 or more"),
    "draws -1": (["evaluate", "--draws", "-1"], "must be 1 or more"),
    "compare one backbone": (["compare", "--backbones", "mobilenetv2"], "at least two"),
    "no subcommand": ([], "required"),
    "unknown option": (["extract", "--frobnicate"], "unrecognized"),
}


def _argv(args: list[str], w: Path) -> list[str]:
    args = [a.replace("{w}", str(w)) for a in args]
    if not args or args[0] == "--cache":
        head, args = args[:2], args[2:]
    else:
        head = []
    if args and args[0] in ("extract", "export"):
        defaults = {"--backbone": "mobilenetv2", "--images": f"{w}/imgs"}
        if args[0] == "export":
            defaults["--out"] = f"{w}/out.npz"
        for k, v in defaults.items():
            if k not in args:
                args += [k, v]
    if args and args[0] == "evaluate":
        args += ["--backbone", "mobilenetv2", "--train", f"{w}/imgs"]
    if args and args[0] == "compare":
        args += ["--images", f"{w}/imgs"]
    return head + args


@pytest.mark.parametrize("case", list(CASES))
def test_bad_argument_exits_2_with_one_line(case, world, capsys, monkeypatch):
    import os

    monkeypatch.setenv("BACKBONE_LENS_CACHE", str(world / "cache"))
    if case == "checkpoint a fifo":
        os.mkfifo(world / "pipe.pth")
    args, says = CASES[case]
    before = _snapshot(world)
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(_argv(args, world)))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2, err
    lines = [ln for ln in err.splitlines() if not ln.startswith("skipped ")]  # per-file notes may precede it
    assert len(lines) == 1 and "Traceback" not in err, err
    assert says in lines[0], lines[0]
    assert _snapshot(world) == before  # nothing written (not even the cache folder)


def test_a_zip_that_is_no_checkpoint_is_one_line(world, capsys, monkeypatch):
    """Passes the sniff (a zip) but timm cannot load it: one line, exit 2, no output file."""
    monkeypatch.setenv("BACKBONE_LENS_CACHE", str(world / "cache"))
    code = main(["export", "--backbone", f"timm/resnet18@{world}/other.pth", "--images", f"{world}/imgs",
                 "--out", f"{world}/o.npz"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot load backbone" in err, err
    assert not (world / "o.npz").exists()


@pytest.mark.slow
def test_corrupt_pngs_and_exif_warnings_are_named(tmp_path, capsys, monkeypatch):
    """bad_crc.png and a 0x0 PNG are corrupt PNGs (not "not an image"); the EXIF warning names its file."""
    from tests.bad_files import make_corpus

    expected = make_corpus(tmp_path / "root", tmp_path / "outside")
    keep = {"rgb.png", "corrupt_exif.jpg", "bad_crc.png", "zero_size.png", "fifo.png", "devzero.png"}
    for p in (tmp_path / "root" / "cls").iterdir():
        if p.name not in keep:
            p.unlink() if not p.is_dir() or p.is_symlink() else shutil.rmtree(p)
    monkeypatch.setenv("BACKBONE_LENS_CACHE", str(tmp_path / "cache"))
    code = main(["extract", "--backbone", "mobilenetv2", "--images", str(tmp_path / "root")])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = [ln.split("\r")[-1] for ln in err.splitlines()]
    assert any(ln.startswith("warning: cls/corrupt_exif.jpg: Corrupt EXIF data") for ln in lines), err
    for name in ("bad_crc.png", "zero_size.png"):
        assert any(ln.startswith(f"skipped cls/{name}: corrupt PNG file") for ln in lines), err
    assert any(ln.startswith("skipped cls/fifo.png: a named pipe") for ln in lines), err
    assert any(ln.startswith("skipped cls/devzero.png: a character device") for ln in lines), err
    assert "Traceback" not in err and expected["bad_crc.png"] == "corrupt PNG"


def test_ray_out_is_a_shards_directory_not_an_npz(world):
    """``extract --engine ray --out SHARDS_DIR`` passes validation with a new or an existing folder."""
    import argparse

    from core.cli._common import validate as _validate

    for out in (world / "shards", world / "empty"):
        args = argparse.Namespace(engine="ray", out=str(out), images=str(world / "imgs"), backbone="mobilenetv2")
        _validate(args)  # raises CliError on a bad argument
        assert args.out == str(out)
