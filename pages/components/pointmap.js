// Point map: a level-of-detail scatter for up to a few million points, drawn into one canvas.
//
// The coordinates arrive once per map as binary (float32 x,y pairs and uint16 class codes); later
// reruns send only small JSON (hover answers, thumbnails, the opened point and its neighbours).
// Each frame bins the points in view into the canvas' pixels (typed arrays, no GPU needed):
//   many points in view  -> density: each pixel is the mean class colour of its points, its
//                           opacity the log of their count;
//   fewer (POINTS_BELOW) -> every point as a small square in its class colour;
//   few (THUMBS_BELOW)   -> the images themselves (thumbnails asked from Python for the points in
//                           view; a crossed grey square where the file is not readable).
// Wheel zooms about the cursor, drag pans, hovering a point shows its thumbnail, a click sends
// the point to Python (trigger "click"). The Box and Lasso tools draw a region instead of panning:
// its outline in data coordinates goes to Python (trigger "select": {kind, poly}, or {clear: true}),
// which finds the points inside and shows their thumbnails; the region stays drawn (Python sends
// it back as "sel") until Clear or Escape.
// The first view fits the points: the box holding all but the outermost 0.2 % on each side (a few
// far outliers would otherwise shrink the map to a dot), refitted when the canvas gets its real size
// unless the user moved the view already.
//
// Payload (component data): bytes = [u32 json length][json][pad to 4][f32 x,y * n][u16 code * n],
// the binary part only when json.has_coords. JSON fields: fid, n, classes, colors, height, pick,
// nbrs, hover {i, src, name, label}, thumbs {i: src|null}, note, sel {kind, poly, count}|null. colors: one
// "#rrggbb" per class code, from Python (core.render.hex_colours, the palette of every figure); this file
// defines no class colours.
const POINTS_BELOW = 60000;
const THUMBS_BELOW = 160;
const THUMB_PX = 44;

function decode(raw) {
  let u8;
  if (raw instanceof ArrayBuffer) u8 = new Uint8Array(raw);
  else if (ArrayBuffer.isView(raw)) u8 = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  else if (typeof raw === "string") return { meta: JSON.parse(raw), bin: null };
  else return { meta: raw || {}, bin: null };
  const len = new DataView(u8.buffer, u8.byteOffset, 4).getUint32(0, true);
  const meta = JSON.parse(new TextDecoder().decode(u8.subarray(4, 4 + len)));
  let bin = null;
  if (meta.has_coords) {
    const start = 4 + len + ((4 - ((4 + len) % 4)) % 4);
    const copy = u8.slice(start); // own, aligned buffer
    const n = meta.n;
    bin = { xy: new Float32Array(copy.buffer, 0, 2 * n), codes: new Uint16Array(copy.buffer, 8 * n, n) };
  }
  return { meta, bin };
}

function hexToRgb(h) {
  const v = parseInt(h.replace("#", ""), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

class PointMap {
  constructor(root) {
    this.root = root;
    this.wrap = document.createElement("div");
    this.wrap.className = "pm-wrap";
    this.canvas = document.createElement("canvas");
    this.canvas.className = "pm-canvas";
    this.tip = document.createElement("div");
    this.tip.className = "pm-tip";
    this.status = document.createElement("div");
    this.status.className = "pm-status";
    this.legend = document.createElement("div");
    this.legend.className = "pm-legend";
    this.tools = document.createElement("div");
    this.tools.className = "pm-tools";
    this.toolButtons = {};
    for (const [tool, label, title] of [["pan", "Pan", "drag to pan, scroll to zoom"],
                                        ["box", "Box", "drag a rectangle to select the points in it"],
                                        ["lasso", "Lasso", "draw around the points to select"]]) {
      const b = document.createElement("button");
      b.textContent = label;
      b.title = title;
      b.dataset.tool = tool;
      b.addEventListener("click", () => this._setTool(tool));
      this.toolButtons[tool] = b;
      this.tools.append(b);
    }
    this.reset = document.createElement("button");
    this.reset.className = "pm-reset";
    this.reset.textContent = "Reset view";
    this.clear = document.createElement("button");
    this.clear.className = "pm-clear";
    this.clear.textContent = "Clear selection";
    this.clear.style.display = "none";
    this.tools.append(this.reset, this.clear);
    this.wrap.append(this.canvas, this.legend, this.tools, this.tip, this.status);
    this.tool = "pan";
    this.sel = null;     // {kind, poly: [[x, y], ...] data coordinates, count}
    this.shape = null;   // the region being drawn: {kind, pts: [[px, py], ...] screen coordinates}
    this.userMoved = false;
    this._setTool("pan");
    root.appendChild(this.wrap);
    this.ctx = this.canvas.getContext("2d");
    this.fid = null;
    this.n = 0;
    this.thumbs = new Map(); // point -> HTMLImageElement | null (not readable)
    this.asked = "";
    this.hoverI = -1;
    this.pick = null;
    this.nbrs = [];
    this.dirty = true;
    this.frameMs = 0;
    this._events();
    new ResizeObserver(() => this._resize()).observe(this.wrap);
    const loop = () => {
      if (!this.wrap.isConnected) return; // unmounted: stop
      if (this.dirty) this._draw();
      requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
  }

  update(raw, api) {
    this.api = api;
    this.wrap.dataset.updates = String((+this.wrap.dataset.updates || 0) + 1);
    const { meta, bin } = decode(raw);
    this.wrap.style.height = (meta.height || 600) + "px";
    if (bin) this._load(meta, bin);
    if (meta.fid !== this.fid) {
      // Python believed we had these coordinates (e.g. after a remount): ask for them again.
      this.api.setStateValue("loaded", null);
      return;
    }
    this.classes = meta.classes;
    this.rgb = meta.colors.map(hexToRgb);
    this.pick = meta.pick;
    this.nbrs = meta.nbrs || [];
    this.note = meta.note || "";
    if (meta.thumbs) {
      for (const [k, src] of Object.entries(meta.thumbs)) {
        const i = +k;
        if (this.thumbs.has(i) && this.thumbs.get(i) !== undefined) continue;
        if (src === null) { this.thumbs.set(i, null); continue; }
        const img = new Image();
        img.onload = () => { this.dirty = true; };
        img.src = src;
        this.thumbs.set(i, img);
      }
      if (this.thumbs.size > 4000) this.thumbs.clear();
    }
    this.hoverAnswer = meta.hover || null;
    if (meta.sel !== undefined && !this.shape) {
      this.sel = meta.sel;
      this.clear.style.display = this.sel ? "" : "none";
      this.wrap.dataset.selected = this.sel ? String(this.sel.count) : "";
    }
    this._legend();
    this._tipUpdate();
    this.dirty = true;
  }

  _load(meta, bin) {
    this.fid = meta.fid;
    this.n = meta.n;
    this.xy = bin.xy;
    this.codes = bin.codes;
    this.thumbs.clear();
    this.asked = "";
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < this.n; i++) {
      const x = this.xy[2 * i], y = this.xy[2 * i + 1];
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    this.bounds = [x0, x1, y0, y1];
    this.fitBox = this._robustBox();
    this.userMoved = false;
    this._grid();
    this._fit();
    this.api.setStateValue("loaded", meta.fid);
    this.wrap.dataset.loaded = meta.fid;
    this.wrap.dataset.loads = String((+this.wrap.dataset.loads || 0) + 1);
    this.wrap.dataset.n = String(this.n);
  }

  // Uniform grid over the data: cell -> points, for hover and click look-ups.
  _grid() {
    const [x0, x1, y0, y1] = this.bounds;
    const g = Math.max(1, Math.min(2048, Math.round(Math.sqrt(this.n / 4))));
    const sx = g / Math.max(x1 - x0, 1e-12), sy = g / Math.max(y1 - y0, 1e-12);
    const cell = new Int32Array(this.n), counts = new Int32Array(g * g + 1);
    for (let i = 0; i < this.n; i++) {
      const cx = Math.min(g - 1, Math.floor((this.xy[2 * i] - x0) * sx));
      const cy = Math.min(g - 1, Math.floor((this.xy[2 * i + 1] - y0) * sy));
      cell[i] = cy * g + cx;
      counts[cell[i] + 1]++;
    }
    for (let c = 0; c < g * g; c++) counts[c + 1] += counts[c];
    const fill = counts.slice(0, g * g), items = new Int32Array(this.n);
    for (let i = 0; i < this.n; i++) items[fill[cell[i]]++] = i;
    this.grid = { g, sx, sy, start: counts, items };
  }

  // The box holding all but the outermost 0.2 % of the points on each axis (from a sample of at most
  // 50,000), padded by 4 %, never beyond the points' full extent.
  _robustBox() {
    const n = this.n, step = Math.max(1, Math.floor(n / 50000)), m = Math.ceil(n / step);
    const xs = new Float32Array(m), ys = new Float32Array(m);
    for (let i = 0, k = 0; i < n && k < m; i += step, k++) { xs[k] = this.xy[2 * i]; ys[k] = this.xy[2 * i + 1]; }
    xs.sort(); ys.sort();
    const q = (a, f) => a[Math.min(a.length - 1, Math.max(0, Math.round(f * (a.length - 1))))];
    const [X0, X1, Y0, Y1] = this.bounds;
    let x0 = q(xs, 0.002), x1 = q(xs, 0.998), y0 = q(ys, 0.002), y1 = q(ys, 0.998);
    const px = 0.04 * (x1 - x0), py = 0.04 * (y1 - y0);
    return [Math.max(X0, x0 - px), Math.min(X1, x1 + px), Math.max(Y0, y0 - py), Math.min(Y1, y1 + py)];
  }

  _fit() {
    const [x0, x1, y0, y1] = this.fitBox || this.bounds;
    const w = this.canvas.width, h = this.canvas.height;
    this.cx = (x0 + x1) / 2;
    this.cy = (y0 + y1) / 2;
    this.scale = 0.94 * Math.min(w / Math.max(x1 - x0, 1e-12), h / Math.max(y1 - y0, 1e-12));
    this.userMoved = false;
    this.dirty = true;
  }

  _resize() {
    const w = Math.max(50, Math.floor(this.wrap.clientWidth)), h = Math.max(50, Math.floor(this.wrap.clientHeight));
    if (w === this.canvas.width && h === this.canvas.height && this.img) return;
    this.canvas.width = w;
    this.canvas.height = h;
    this.img = this.ctx.createImageData(w, h);
    this.acc = new Float32Array(w * h * 4);
    // the first fit may have seen the canvas' default 300 x 150: fit again unless the user moved the view
    if (this.bounds && !this.userMoved) this._fit();
    this.dirty = true;
  }

  _setTool(tool) {
    this.tool = tool;
    for (const [t, b] of Object.entries(this.toolButtons)) b.classList.toggle("pm-on", t === tool);
    this.canvas.style.cursor = tool === "pan" ? "crosshair" : "cell";
    this.wrap.dataset.tool = tool;
  }

  // Which points lie in a polygon given in data coordinates (even-odd rule, as Python's selection).
  _inside(poly) {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const [x, y] of poly) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
    let count = 0;
    const m = poly.length, xy = this.xy;
    for (let i = 0; i < this.n; i++) {
      const px = xy[2 * i], py = xy[2 * i + 1];
      if (px < x0 || px > x1 || py < y0 || py > y1) continue;
      let odd = false;
      for (let a = 0, b = m - 1; a < m; b = a++) {
        const [ax, ay] = poly[a], [bx, by] = poly[b];
        if ((ay > py) !== (by > py) && px < ax + (py - ay) * (bx - ax) / (by - ay)) odd = !odd;
      }
      if (odd) count++;
    }
    return count;
  }

  _finishShape() {
    const sh = this.shape;
    this.shape = null;
    let pts = sh.pts;
    if (sh.kind === "box") {
      const [a, b] = [pts[0], pts[pts.length - 1]];
      pts = [[a[0], a[1]], [b[0], a[1]], [b[0], b[1]], [a[0], b[1]]];
    }
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const [x, y] of pts) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
    if (pts.length < 3 || x1 - x0 < 4 || y1 - y0 < 4) { this.dirty = true; return false; } // a click, not a region
    const poly = pts.map(([px, py]) => this.toData(px, py));
    const count = this._inside(poly);
    this.sel = { kind: sh.kind, poly, count };
    this.clear.style.display = "";
    this.wrap.dataset.selected = String(count);
    this.api.setTriggerValue("select", { kind: sh.kind, poly });
    this.dirty = true;
    return true;
  }

  _clearSelection() {
    this.sel = null;
    this.clear.style.display = "none";
    this.wrap.dataset.selected = "";
    this.api.setTriggerValue("select", { clear: true });
    this.dirty = true;
  }

  _drawSelection() {
    const ctx = this.ctx;
    const outline = (pts, closed) => {
      if (!pts.length) return;
      ctx.beginPath();
      ctx.moveTo(pts[0][0], pts[0][1]);
      for (const [x, y] of pts.slice(1)) ctx.lineTo(x, y);
      if (closed) ctx.closePath();
    };
    ctx.save();
    if (this.sel) {
      outline(this.sel.poly.map(([x, y]) => this.toScreen(x, y)), true);
      ctx.fillStyle = "rgba(31, 119, 180, 0.10)";
      ctx.fill("evenodd");
      ctx.strokeStyle = "#1f77b4";
      ctx.lineWidth = 2;
      ctx.setLineDash([6, 4]);
      ctx.stroke();
    }
    if (this.shape) {
      let pts = this.shape.pts;
      if (this.shape.kind === "box" && pts.length > 1) {
        const [a, b] = [pts[0], pts[pts.length - 1]];
        pts = [[a[0], a[1]], [b[0], a[1]], [b[0], b[1]], [a[0], b[1]]];
      }
      outline(pts, this.shape.kind === "box");
      ctx.strokeStyle = "#d62728";
      ctx.lineWidth = 1.5;
      ctx.setLineDash([4, 3]);
      ctx.stroke();
    }
    ctx.restore();
  }

  toScreen(x, y) {
    return [(x - this.cx) * this.scale + this.canvas.width / 2, (this.cy - y) * this.scale + this.canvas.height / 2];
  }

  toData(px, py) {
    return [(px - this.canvas.width / 2) / this.scale + this.cx, this.cy - (py - this.canvas.height / 2) / this.scale];
  }

  nearest(px, py, radius) {
    if (!this.grid) return -1;
    const { g, sx, sy, start, items } = this.grid;
    const [x0, , y0] = this.bounds;
    const [dx, dy] = this.toData(px, py);
    const r = radius / this.scale;
    const ca = Math.max(0, Math.floor((dx - r - x0) * sx)), cb = Math.min(g - 1, Math.floor((dx + r - x0) * sx));
    const ra = Math.max(0, Math.floor((dy - r - y0) * sy)), rb = Math.min(g - 1, Math.floor((dy + r - y0) * sy));
    let best = -1, bd = radius * radius, seen = 0;
    for (let cy = ra; cy <= rb; cy++) {
      for (let cx = ca; cx <= cb; cx++) {
        const c = cy * g + cx;
        for (let k = start[c]; k < start[c + 1]; k++) {
          const i = items[k];
          const [sxp, syp] = this.toScreen(this.xy[2 * i], this.xy[2 * i + 1]);
          const d = (sxp - px) ** 2 + (syp - py) ** 2;
          if (d <= bd) { bd = d; best = i; }
          if (++seen > 400000) return best; // dense zoomed-out view: good enough
        }
      }
    }
    return best;
  }

  // Bin the points in view into the accumulation buffer. Zoomed in, only the grid cells that
  // overlap the view are visited; while the user is panning / zooming a large map, every
  // step-th point is drawn (counts scaled by step) and the full frame follows when the motion stops.
  _bin(step) {
    const w = this.canvas.width, h = this.canvas.height, xy = this.xy, codes = this.codes;
    const acc = this.acc, rgb = this.rgb;
    const s = this.scale, ox = w / 2 - this.cx * s, oy = h / 2 + this.cy * s;
    const black = [0, 0, 0];
    let inView = 0;
    const add = (i) => {
      const px = (xy[2 * i] * s + ox) | 0, py = (oy - xy[2 * i + 1] * s) | 0;
      if (px < 0 || py < 0 || px >= w || py >= h) return;
      inView++;
      const c = rgb[codes[i]] || black, k = (py * w + px) * 4;
      acc[k] += c[0] * step; acc[k + 1] += c[1] * step; acc[k + 2] += c[2] * step; acc[k + 3] += step;
    };
    const { g, sx, sy, start, items } = this.grid;
    const [x0, , y0] = this.bounds;
    const [ax, ay] = this.toData(0, h), [bx, by] = this.toData(w, 0);
    const ca = Math.max(0, Math.floor((ax - x0) * sx)), cb = Math.min(g - 1, Math.floor((bx - x0) * sx));
    const ra = Math.max(0, Math.floor((ay - y0) * sy)), rb = Math.min(g - 1, Math.floor((by - y0) * sy));
    const cells = Math.max(0, cb - ca + 1) * Math.max(0, rb - ra + 1);
    if (cells < 0.5 * g * g) {
      for (let cy = ra; cy <= rb; cy++) {
        for (let k = start[cy * g + ca]; k < start[cy * g + cb + 1]; k += step) add(items[k]);
      }
    } else {
      for (let i = 0; i < this.n; i += step) add(i);
    }
    return inView * step;
  }

  _draw() {
    this.dirty = false;
    if (!this.xy || !this.acc) return;
    const t0 = performance.now();
    const w = this.canvas.width, h = this.canvas.height, n = this.n;
    const acc = this.acc, data = this.img.data;
    acc.fill(0);
    const moving = t0 - (this.lastMove || 0) < 150;
    const step = moving ? Math.max(1, Math.ceil((this.inView || n) / 150000)) : 1;
    const inView = this._bin(step);
    if (step > 1) { // the full frame once the motion stops
      clearTimeout(this._fullTimer);
      this._fullTimer = setTimeout(() => { this.dirty = true; }, 160);
    }
    this.inView = inView;
    this.mode = inView > POINTS_BELOW ? "density" : inView > THUMBS_BELOW ? "points" : "thumbnails";
    data.fill(255);
    if (this.mode === "density") {
      let maxc = 1;
      for (let k = 3; k < acc.length; k += 4) if (acc[k] > maxc) maxc = acc[k];
      const lm = Math.log1p(maxc);
      for (let k = 0; k < acc.length; k += 4) {
        const cnt = acc[k + 3];
        if (!cnt) continue;
        const a = 0.35 + 0.65 * Math.log1p(cnt) / lm;
        data[k] = 255 * (1 - a) + (acc[k] / cnt) * a;
        data[k + 1] = 255 * (1 - a) + (acc[k + 1] / cnt) * a;
        data[k + 2] = 255 * (1 - a) + (acc[k + 2] / cnt) * a;
      }
    } else {
      const r = inView > 20000 ? 1 : inView > 2000 ? 2 : 3;
      for (let k = 0; k < acc.length; k += 4) {
        const cnt = acc[k + 3];
        if (!cnt) continue;
        const p = k >> 2, px = p % w, py = (p / w) | 0;
        const cr = acc[k] / cnt, cg = acc[k + 1] / cnt, cb = acc[k + 2] / cnt;
        for (let yy = Math.max(0, py - r); yy <= Math.min(h - 1, py + r); yy++) {
          for (let xx = Math.max(0, px - r); xx <= Math.min(w - 1, px + r); xx++) {
            const q = (yy * w + xx) * 4;
            data[q] = cr; data[q + 1] = cg; data[q + 2] = cb;
          }
        }
      }
    }
    const ctx = this.ctx;
    ctx.putImageData(this.img, 0, 0);
    if (this.mode === "thumbnails") this._drawThumbs();
    this._drawSelection();
    this._drawRings();
    this.frameMs = performance.now() - t0;
    this.status.textContent = `${n.toLocaleString()} points · ${inView.toLocaleString()} in view · ` +
      (this.mode === "density" ? "density (zoom in for points, then images)" :
       this.mode === "points" ? `points (zoom in below ${THUMBS_BELOW} for images)` : "images") +
      ` · ${this.frameMs.toFixed(0)} ms/frame` + (this.sel ? ` · ${this.sel.count.toLocaleString()} selected` : "") +
      (this.note ? " · " + this.note : "");
    this.wrap.dataset.mode = this.mode;
    this.wrap.dataset.frames = String((+this.wrap.dataset.frames || 0) + 1);
    this.wrap.dataset.frameMs = this.frameMs.toFixed(1);
    this._askThumbs();
  }

  _visible() {
    // the points in view (at most THUMBS_BELOW + 1), from the grid cells that overlap the view
    const out = [], w = this.canvas.width, h = this.canvas.height, pad = THUMB_PX;
    const { g, sx, sy, start, items } = this.grid;
    const [x0, , y0] = this.bounds;
    const [ax, ay] = this.toData(-pad, h + pad), [bx, by] = this.toData(w + pad, -pad);
    const ca = Math.max(0, Math.floor((ax - x0) * sx)), cb = Math.min(g - 1, Math.floor((bx - x0) * sx));
    const ra = Math.max(0, Math.floor((ay - y0) * sy)), rb = Math.min(g - 1, Math.floor((by - y0) * sy));
    for (let cy = ra; cy <= rb && out.length <= THUMBS_BELOW; cy++) {
      for (let k = start[cy * g + ca]; k < start[cy * g + cb + 1] && out.length <= THUMBS_BELOW; k++) {
        const i = items[k];
        const [px, py] = this.toScreen(this.xy[2 * i], this.xy[2 * i + 1]);
        if (px >= -pad && py >= -pad && px < w + pad && py < h + pad) out.push(i);
      }
    }
    return out;
  }

  _drawThumbs() {
    const ctx = this.ctx, half = THUMB_PX / 2;
    this.visible = this._visible();
    for (const i of this.visible) {
      const [px, py] = this.toScreen(this.xy[2 * i], this.xy[2 * i + 1]);
      const c = this.rgb[this.codes[i]] || [0, 0, 0];
      const img = this.thumbs.get(i);
      ctx.fillStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
      ctx.fillRect(px - half - 2, py - half - 2, THUMB_PX + 4, THUMB_PX + 4);
      if (img && img.complete && img.naturalWidth) {
        ctx.drawImage(img, px - half, py - half, THUMB_PX, THUMB_PX);
      } else {
        ctx.fillStyle = "#e6e6e6";
        ctx.fillRect(px - half, py - half, THUMB_PX, THUMB_PX);
        if (img === null) { // not readable: a crossed placeholder
          ctx.strokeStyle = "#999";
          ctx.beginPath();
          ctx.moveTo(px - half, py - half); ctx.lineTo(px + half, py + half);
          ctx.moveTo(px + half, py - half); ctx.lineTo(px - half, py + half);
          ctx.stroke();
        }
      }
    }
  }

  _askThumbs() {
    if (this.mode !== "thumbnails") return;
    const want = (this.visible || []).filter((i) => !this.thumbs.has(i));
    const key = want.join(",");
    if (!want.length || key === this.asked) return;
    clearTimeout(this._askTimer);
    this._askTimer = setTimeout(() => {
      this.asked = key;
      this.api.setStateValue("view", want);
    }, 200);
  }

  _drawRings() {
    const ctx = this.ctx;
    const ring = (i, r, color, width) => {
      const [px, py] = this.toScreen(this.xy[2 * i], this.xy[2 * i + 1]);
      ctx.beginPath();
      ctx.arc(px, py, r, 0, 2 * Math.PI);
      ctx.strokeStyle = color;
      ctx.lineWidth = width;
      ctx.stroke();
    };
    const r0 = this.mode === "thumbnails" ? THUMB_PX / 2 + 6 : 9;
    for (const i of this.nbrs) if (i >= 0 && i < this.n) ring(i, r0, "#111", 2);
    if (this.pick !== null && this.pick !== undefined && this.pick < this.n) ring(this.pick, r0 + 5, "#d62728", 3);
    if (this.hoverI >= 0) ring(this.hoverI, r0, "#ff7f0e", 2);
  }

  _legend() {
    const items = this.classes.slice(0, 30).map((c, j) =>
      `<span class="pm-key"><i style="background:${this.rgb[j] ? `rgb(${this.rgb[j].join(",")})` : "#000"}"></i>${
        (c || "(unlabelled)").replace(/[<>&]/g, "")}</span>`);
    if (this.classes.length > 30) items.push(`<span class="pm-key">+${this.classes.length - 30} more</span>`);
    const html = items.join("");
    if (html !== this._legendHtml) { this.legend.innerHTML = html; this._legendHtml = html; }
  }

  _tipUpdate() {
    const i = this.hoverI;
    if (i < 0) { this.tip.style.display = "none"; return; }
    const a = this.hoverAnswer && this.hoverAnswer.i === i ? this.hoverAnswer : null;
    const cls = this.classes[this.codes[i]] || "(unlabelled)";
    let html = "";
    const local = this.thumbs.get(i); // already in the map (zoomed in): no need to wait for Python
    if (a && a.src) html += `<img src="${a.src}" alt="">`;
    else if (local && local.complete && local.naturalWidth) html += `<img src="${local.src}" alt="">`;
    else if (a) html += `<div class="pm-noimg">image not readable</div>`;
    else html += `<div class="pm-noimg">…</div>`;
    const name = a && a.name ? a.name.replace(/[<>&]/g, "") : `#${i}`;
    html += `<div><b>${name}</b><br>class: ${cls.replace(/[<>&]/g, "")}</div>`;
    this.tip.innerHTML = html;
    this.tip.style.display = "block";
    this.tip.dataset.point = String(i);
    this.tip.dataset.ready = a ? "1" : "0";
  }

  _events() {
    const c = this.canvas;
    let drag = null;
    const pos = (e) => { const r = c.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      const [px, py] = pos(e);
      const [dx, dy] = this.toData(px, py);
      this.scale *= Math.exp(-e.deltaY * 0.0015);
      this.lastMove = performance.now();
      this.userMoved = true;
      // keep the data point under the cursor in place
      this.cx = dx - (px - c.width / 2) / this.scale;
      this.cy = dy + (py - c.height / 2) / this.scale;
      this.dirty = true;
    }, { passive: false });
    c.addEventListener("mousedown", (e) => {
      if (this.tool !== "pan") {
        this.shape = { kind: this.tool, pts: [pos(e)] };
        return;
      }
      drag = { p: pos(e), cx: this.cx, cy: this.cy, moved: false };
    });
    window.addEventListener("mouseup", (e) => {
      if (this.shape) {
        if (this._finishShape()) return;
      } else {
        if (!drag) return;
        const d = drag;
        drag = null;
        if (d.moved) return;
      }
      const [px, py] = pos(e);
      const i = this.nearest(px, py, 10);
      if (i >= 0) this.api.setTriggerValue("click", i);
    });
    window.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.wrap.isConnected && (this.shape || this.sel)) {
        this.shape = null;
        if (this.sel) this._clearSelection();
        this.dirty = true;
      }
    });
    c.addEventListener("mousemove", (e) => {
      const [px, py] = pos(e);
      if (this.shape) {
        const last = this.shape.pts[this.shape.pts.length - 1];
        if (this.shape.kind === "box") this.shape.pts = [this.shape.pts[0], [px, py]];
        else if (Math.abs(px - last[0]) + Math.abs(py - last[1]) > 3) this.shape.pts.push([px, py]);
        this.dirty = true;
        return;
      }
      if (drag) {
        const ddx = px - drag.p[0], ddy = py - drag.p[1];
        if (Math.abs(ddx) + Math.abs(ddy) > 3) drag.moved = true;
        this.cx = drag.cx - ddx / this.scale;
        this.cy = drag.cy + ddy / this.scale;
        this.lastMove = performance.now();
        if (drag.moved) this.userMoved = true;
        this.dirty = true;
        return;
      }
      const i = this.nearest(px, py, 8);
      this.tip.style.left = Math.min(px + 14, c.width - 180) + "px";
      this.tip.style.top = Math.min(py + 14, c.height - 150) + "px";
      if (i !== this.hoverI) {
        this.hoverI = i;
        this.dirty = true;
        this._tipUpdate();
        clearTimeout(this._hoverTimer);
        if (i >= 0) this._hoverTimer = setTimeout(() => this.api.setStateValue("hover", i), 60);
      }
    });
    c.addEventListener("mouseleave", () => { this.hoverI = -1; this._tipUpdate(); this.dirty = true; });
    this.reset.addEventListener("click", () => this._fit());
    this.clear.addEventListener("click", () => this._clearSelection());
  }
}

export default function (component) {
  const { data, parentElement, setStateValue, setTriggerValue } = component;
  let pm = parentElement.__pointmap;
  if (!pm || !pm.wrap.isConnected) {
    pm = new PointMap(parentElement);
    parentElement.__pointmap = pm;
  }
  pm.update(data, { setStateValue, setTriggerValue });
}
