"""core.io.policy: what a browser user of a shared server may read and load."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.io.policy import (
    ENV_ALLOW_ANY_MODEL,
    ENV_DATA_ROOTS,
    ENV_MAX_FILES,
    ENV_TEAM,
    ENV_WEIGHTS_DIRS,
    SAMPLE_DATA,
    PolicyError,
    ServerPolicy,
    check_checkpoint_file,
    is_loopback,
)


@pytest.fixture
def tree(tmp_path):
    """root/{a/x, b}, an outside folder, and links inside root that lead out or stay in."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "x").mkdir(parents=True)
    (root / "b").mkdir()
    (root / ".hidden").mkdir()
    (outside / "secret").mkdir(parents=True)
    (root / "escape").symlink_to(outside / "secret", target_is_directory=True)
    (root / "inner").symlink_to(root / "a", target_is_directory=True)
    (root / "file.txt").write_text("x")
    return root, outside


def _policy(root: Path, **kw) -> ServerPolicy:
    return ServerPolicy.from_env({ENV_DATA_ROOTS: str(root), **kw}, server_address="127.0.0.1")


def test_folders_under_a_root_resolve(tree):
    root, _ = tree
    pol = _policy(root)
    assert pol.resolve_data_folder(str(root / "a")) == (root / "a").resolve()
    assert pol.resolve_data_folder("a/x") == (root / "a" / "x").resolve()          # relative to a root
    assert pol.resolve_data_folder(str(root / "inner")) == (root / "a").resolve()  # a link that stays inside
    assert pol.resolve_data_folder("stamps") == (SAMPLE_DATA / "stamps").resolve()  # sample data always a root


def test_outside_is_refused_with_one_message_whether_or_not_it_exists(tree):
    root, outside = tree
    pol = _policy(root)
    messages = []
    for text in (str(outside / "secret"), str(outside / "nope"), "/", "/etc", str(root / ".." / "outside"),
                 str(root / "escape"), str(root / "escape" / "deeper"), "../outside/secret"):
        with pytest.raises(PolicyError) as e:
            pol.resolve_data_folder(text)
        messages.append(str(e.value).replace(text, "<path>"))
    assert len(set(messages)) == 1, set(messages)
    assert "not under the data roots" in messages[0] and "\n" not in messages[0]


def test_inside_but_not_a_folder(tree):
    root, _ = tree
    with pytest.raises(PolicyError, match="Not a folder"):
        _policy(root).resolve_data_folder(str(root / "file.txt"))


def test_picker_lists_folders_under_the_roots_only(tree):
    root, outside = tree
    folders = _policy(root).data_folders()
    r = root.resolve()
    assert {r, r / "a", r / "a" / "x", r / "b"} <= set(folders)
    assert not any(f == outside.resolve() / "secret" or ".hidden" in f.parts for f in folders)
    assert folders[0] == SAMPLE_DATA.resolve()
    assert len(_policy(root).data_folders(max_count=3)) == 3


def test_team_mode_defaults_are_strict(tmp_path):
    home_only = ServerPolicy.from_env({}, server_address="127.0.0.1")
    assert not home_only.team and home_only.allow_any_model and Path.home().resolve() in home_only.data_roots
    for pol in (ServerPolicy.from_env({}, server_address="0.0.0.0"), ServerPolicy.from_env({}, server_address=None),
                ServerPolicy.from_env({ENV_TEAM: "1"}, server_address="127.0.0.1")):
        assert pol.team and not pol.allow_any_model
        assert pol.data_roots == (SAMPLE_DATA.resolve(),) and pol.weights_dirs == ()
    allowed = ServerPolicy.from_env({ENV_TEAM: "1", ENV_ALLOW_ANY_MODEL: "1"})
    assert allowed.allow_any_model


def test_bad_settings_are_one_line_errors():
    with pytest.raises(PolicyError, match=ENV_MAX_FILES):
        ServerPolicy.from_env({ENV_MAX_FILES: "-3"}, server_address="127.0.0.1")
    with pytest.raises(PolicyError, match=ENV_TEAM):
        ServerPolicy.from_env({ENV_TEAM: "maybe"}, server_address="127.0.0.1")


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback(None) and not is_loopback("10.0.0.5")


def _safetensors(path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(path))
    return path


def test_checkpoints_only_from_the_weights_folders(tmp_path):
    wdir, elsewhere = tmp_path / "weights", tmp_path / "elsewhere"
    wdir.mkdir()
    elsewhere.mkdir()
    good = _safetensors(wdir / "m.safetensors")
    _safetensors(elsewhere / "m.safetensors")
    (wdir / "link.safetensors").symlink_to(elsewhere / "m.safetensors")
    (wdir / "notes.pth").write_text("not a checkpoint")
    pol = ServerPolicy.from_env({ENV_WEIGHTS_DIRS: str(wdir), ENV_TEAM: "1"})
    assert pol.check_backbone_name("mobilenetv2", {"mobilenetv2"}) == "mobilenetv2"
    assert pol.check_backbone_name(f"timm/resnet18@{good}") == f"timm/resnet18@{good.resolve()}"
    assert pol.check_backbone_name("open_clip/ViT-B-32@m.safetensors") == f"open_clip/ViT-B-32@{good.resolve()}"
    messages = set()
    for f in (elsewhere / "m.safetensors", elsewhere / "missing.pth", wdir / "link.safetensors", wdir / "nope.pth",
              "/etc/passwd", "../elsewhere/m.safetensors"):
        with pytest.raises(PolicyError) as e:
            pol.check_backbone_name(f"timm/resnet18@{f}")
        messages.add(str(e.value).replace(str(f), "<file>"))
    assert len(messages) == 1, messages
    with pytest.raises(PolicyError, match="not a checkpoint file"):
        pol.check_backbone_name(f"timm/resnet18@{wdir / 'notes.pth'}")
    for name in ("open_clip/ViT-B-32/random", "timm/resnet50.a1_in1k", "open_clip/ViT-H-14/laion2b_s32b_b79k"):
        with pytest.raises(PolicyError, match=ENV_ALLOW_ANY_MODEL):
            pol.check_backbone_name(name)
    with pytest.raises(PolicyError, match="Unknown backbone"):
        pol.check_backbone_name("../../etc/passwd")
    assert ServerPolicy.from_env({ENV_ALLOW_ANY_MODEL: "1"}).check_backbone_name("open_clip/ViT-B-32/random")


def test_checkpoint_sniffing(tmp_path):
    import torch

    torch.save({"w": torch.zeros(2)}, tmp_path / "zip.pth")
    torch.save({"w": torch.zeros(2)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert check_checkpoint_file(_safetensors(tmp_path / "a.safetensors")) == "safetensors"
    assert check_checkpoint_file(tmp_path / "zip.pth") == "torch-zip"
    assert check_checkpoint_file(tmp_path / "legacy.pth") == "pickle"
    (tmp_path / "garbage.bin").write_bytes(os.urandom(64))
    os.mkfifo(tmp_path / "pipe.pth")
    for bad in ("garbage.bin", "pipe.pth"):
        with pytest.raises(PolicyError):
            check_checkpoint_file(tmp_path / bad)


def test_local_mode_reads_any_folder_the_user_types(tree, tmp_path):
    root, outside = tree
    local = ServerPolicy.from_env({}, server_address="127.0.0.1")  # one person, their own machine
    assert local.any_folder and Path.home().resolve() in local.data_roots  # home still fills the picker
    assert local.resolve_data_folder(str(outside / "secret")) == (outside / "secret").resolve()
    assert local.resolve_data_folder(str(root / "escape")) == (outside / "secret").resolve()
    assert local.is_within_data_roots(outside / "secret")
    with pytest.raises(PolicyError, match="^No folder .*nope"):
        local.resolve_data_folder(str(outside / "nope"))
    with pytest.raises(PolicyError, match="Not a folder"):
        local.resolve_data_folder(str(root / "file.txt"))
    assert "BACKBONE_LENS" not in str(pytest.raises(PolicyError, local.resolve_data_folder, str(outside / "nope")).value)
    # the team policy keeps its roots, and so does a local server whose operator set them
    for pol in (ServerPolicy.from_env({ENV_DATA_ROOTS: str(root), ENV_TEAM: "1"}), _policy(root)):
        assert not pol.any_folder
        with pytest.raises(PolicyError, match="not under the data roots"):
            pol.resolve_data_folder(str(outside / "secret"))
    assert not ServerPolicy.from_env({}, server_address="0.0.0.0").any_folder


def test_an_empty_folder_is_named(tmp_path):
    from core.io.images import NoImagesError, load_folder, require_images

    empty = tmp_path / "holiday photos"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no pictures here")
    with pytest.raises(NoImagesError, match=f"^no images found in {empty} \\(looked for .bmp, .gif"):
        require_images(load_folder(empty, use_index=False))
    (empty / "a.png").write_bytes(b"")
    (empty / "b.jpg").write_text("text")
    with pytest.raises(NoImagesError, match=r"no usable images in .*: 2 image files could not be read \(first: a.png: "
                                            r"the file is empty"):
        require_images(load_folder(empty, use_index=False))
    stamps = load_folder(SAMPLE_DATA / "stamps")
    assert require_images(stamps) is stamps
