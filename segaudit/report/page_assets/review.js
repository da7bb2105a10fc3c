/* segaudit review page: a list of flagged images and regions, a detail view, decisions.
 *
 * Reads window.SEGAUDIT_REVIEW (data.js) and, per image, m00017.js (its label maps).
 * Every value from the data reaches the document through textContent or a form
 * control's value, never as markup. Decisions live in localStorage under the run's
 * fingerprint and leave the page only through Export (decisions.csv).
 */
(function () {
  "use strict";

  var D = window.SEGAUDIT_REVIEW;
  var ROW = 60;
  var STORE_KEY = "segaudit-review:" + D.fingerprint;
  var DECISIONS = { real_error: "real error", false_alarm: "false alarm", unsure: "unsure" };
  var names = D.classes.names;
  var colors = D.classes.colors;
  var $ = function (id) { return document.getElementById(id); };

  // --- data -------------------------------------------------------------------------

  function table(block) {
    if (!block) return null;
    return block.rows.map(function (row) {
      var item = {};
      block.columns.forEach(function (name, i) { item[name] = row[i]; });
      return item;
    });
  }

  var images = table(D.images);
  var byImage = new Map(images.map(function (it) { return [it.image, it]; }));
  var regionRows = table(D.regions);

  function itemKey(id, region) { return JSON.stringify([String(id), region === "" ? "" : String(region)]); }

  images.forEach(function (it) {
    it.type = "image"; it.region = ""; it.size = it.issue_pixels; it.key = itemKey(it.id, "");
  });
  var regions = (regionRows || []).map(function (r) {
    var img = byImage.get(r.image);
    return {
      type: "region", image: r.image, id: img.id, region: r.region, score: r.score,
      size: r.pixels, given: r.given, predicted: r.predicted, kind: r.kind, rank: r.rank,
      box: [r.x0, r.y0, r.x1, r.y1], key: itemKey(img.id, r.region)
    };
  });

  function className(k) {
    if (k === null || k === undefined || k < 0) return "";
    return k < names.length ? names[k] : "class " + k;
  }
  function pairText(it) {
    if (it.given < 0 || it.given === undefined) return "";
    return className(it.given) + " \u2192 " + className(it.predicted);
  }

  // --- decisions (localStorage) -------------------------------------------------------

  var decisions = {};
  try { decisions = JSON.parse(window.localStorage.getItem(STORE_KEY) || "{}") || {}; }
  catch (e) { decisions = {}; }
  function save() {
    try { window.localStorage.setItem(STORE_KEY, JSON.stringify(decisions)); }
    catch (e) { $("d-state").textContent = "could not save: " + e.message; }
  }
  function decisionOf(it) { var d = decisions[it.key]; return d ? d.decision : ""; }

  // --- list state ---------------------------------------------------------------------

  var state = {
    mode: regions.length ? "regions" : "images",
    sort: { column: "score", dir: 1 },
    view: [],
    current: -1
  };
  var COLUMNS = {
    images: [
      ["thumb", ""], ["id", "id"], ["score", "score"], ["size", "issue px"],
      ["pair", "class pair"], ["kind", "kind"], ["decision", "decision"]
    ],
    regions: [
      ["thumb", ""], ["id", "id / region"], ["score", "score"], ["size", "pixels"],
      ["pair", "class pair"], ["kind", "kind"], ["decision", "decision"]
    ]
  };

  function items() { return state.mode === "regions" ? regions : images; }

  function sortValue(it, column) {
    if (column === "pair") return pairText(it);
    if (column === "decision") return decisionOf(it);
    if (column === "id") return it.type === "region" ? String(it.id) + "\u0000" + String(1e9 + it.region) : String(it.id);
    return it[column];
  }
  function compare(a, b) {
    var column = state.sort.column, dir = state.sort.dir;
    var x = sortValue(a, column), y = sortValue(b, column);
    var xNull = x === null || x === undefined || x === "", yNull = y === null || y === undefined || y === "";
    if (xNull || yNull) return xNull === yNull ? tieBreak(a, b) : (xNull ? 1 : -1);
    var c = typeof x === "number" ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
    return c ? c * dir : tieBreak(a, b);
  }
  function tieBreak(a, b) {
    if (a.type === "region") return a.rank - b.rank;
    return a.image - b.image;
  }

  function passes(it) {
    var k = $("f-class").value, pair = $("f-pair").value, kind = $("f-kind").value;
    var decision = $("f-decision").value;
    if (k !== "" && it.given !== Number(k) && it.predicted !== Number(k)) return false;
    if (pair !== "" && it.given + ":" + it.predicted !== pair) return false;
    if (kind !== "" && it.kind !== kind) return false;
    if (decision === "none" && decisionOf(it)) return false;
    if (decision !== "" && decision !== "none" && decisionOf(it) !== decision) return false;
    return true;
  }

  function rebuild(keepKey) {
    state.view = items().filter(passes).sort(compare);
    var at = keepKey ? state.view.findIndex(function (it) { return it.key === keepKey; }) : -1;
    state.current = at;
    $("spacer").style.height = state.view.length * ROW + "px";
    renderHead();
    renderRows();
    renderCounts();
    if (at < 0) showDetail(null);
  }

  // --- the list -----------------------------------------------------------------------

  function renderHead() {
    var head = $("list-head");
    head.replaceChildren();
    COLUMNS[state.mode].forEach(function (col) {
      var cell = document.createElement("span");
      if (col[0] !== "thumb") {
        var button = document.createElement("button");
        button.type = "button";
        button.textContent = col[1];
        button.dataset.sort = col[0];
        if (state.sort.column === col[0]) button.setAttribute("aria-sort", state.sort.dir > 0 ? "ascending" : "descending");
        button.addEventListener("click", function () {
          var same = state.sort.column === col[0];
          state.sort = { column: col[0], dir: same ? -state.sort.dir : 1 };
          rebuild(currentItem() && currentItem().key);
        });
        cell.appendChild(button);
      }
      head.appendChild(cell);
    });
  }

  function text(content, className) {
    var span = document.createElement("span");
    span.textContent = content;
    if (className) span.className = className;
    span.title = content;
    return span;
  }

  function rowElement(it, index) {
    var row = document.createElement("div");
    row.className = "row" + (index === state.current ? " current" : "");
    row.setAttribute("role", "row");
    row.dataset.index = String(index);
    row.dataset.key = it.key;
    row.style.top = index * ROW + "px";
    var thumb = document.createElement("span");
    var img = document.createElement("img");
    img.src = "t" + String(it.image).padStart(5, "0") + ".jpg";
    img.alt = "";
    img.decoding = "async";
    thumb.appendChild(img);
    row.appendChild(thumb);
    row.appendChild(text(it.type === "region" ? it.id + "  #" + it.region : String(it.id), "id"));
    row.appendChild(text(it.score === null ? "" : it.score.toFixed(4), "score"));
    row.appendChild(text(it.size.toLocaleString("en-US"), "size"));
    row.appendChild(text(pairText(it), "pair"));
    row.appendChild(text(it.kind, "kind"));
    var d = decisionOf(it);
    row.appendChild(text(d ? DECISIONS[d] : "", "decision " + d));
    row.addEventListener("click", function () { select(index); });
    return row;
  }

  function renderRows() {
    var scroller = $("scroller");
    var first = Math.max(0, Math.floor(scroller.scrollTop / ROW) - 5);
    var last = Math.min(state.view.length, Math.ceil((scroller.scrollTop + scroller.clientHeight) / ROW) + 5);
    var rows = [];
    for (var i = first; i < last; i++) rows.push(rowElement(state.view[i], i));
    $("rows").replaceChildren.apply($("rows"), rows);
  }

  function renderCounts() {
    var all = items(), reviewed = 0, confirmed = 0;
    all.forEach(function (it) {
      var d = decisionOf(it);
      if (d) reviewed += 1;
      if (d === "real_error") confirmed += 1;
    });
    var what = state.mode === "regions" ? " regions" : " images";
    var shown = state.view.length === all.length ? "" : " (" + state.view.length + " shown)";
    $("counts").textContent = all.length + what + " flagged, " + reviewed + " reviewed, " +
      confirmed + " confirmed" + shown;
  }

  function currentItem() { return state.current >= 0 ? state.view[state.current] : null; }

  function select(index) {
    if (index < 0 || index >= state.view.length) return;
    state.current = index;
    var scroller = $("scroller");
    var top = index * ROW;
    if (top < scroller.scrollTop) scroller.scrollTop = top;
    else if (top + ROW > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = top + ROW - scroller.clientHeight;
    renderRows();
    showDetail(state.view[index]);
  }

  // --- filters ------------------------------------------------------------------------

  function fillSelect(select, options) {
    var keep = select.value;
    while (select.options.length > 1) select.remove(1);
    options.forEach(function (o) { select.add(new Option(o[1], o[0])); });
    select.value = options.some(function (o) { return o[0] === keep; }) ? keep : "";
  }

  function fillFilters() {
    var all = items(), classes = new Set(), pairs = new Map(), kinds = new Set();
    all.forEach(function (it) {
      if (it.given >= 0) { classes.add(it.given); classes.add(it.predicted); pairs.set(it.given + ":" + it.predicted, pairText(it)); }
      if (it.kind) kinds.add(it.kind);
    });
    fillSelect($("f-class"), Array.from(classes).sort(function (a, b) { return a - b; })
      .map(function (k) { return [String(k), className(k)]; }));
    fillSelect($("f-pair"), Array.from(pairs.entries()).sort(function (a, b) { return a[1].localeCompare(b[1]); }));
    fillSelect($("f-kind"), Array.from(kinds).sort().map(function (k) { return [k, k]; }));
  }

  // --- the detail view ----------------------------------------------------------------

  var maps = new Map(), waiting = new Map();  // image -> [{resolve, reject}] while loading
  window.segauditMaps = function (image, data) {
    maps.set(image, data);
    (waiting.get(image) || []).forEach(function (w) { w.resolve(data); });
    waiting.delete(image);
  };
  function loadMaps(image) {
    if (maps.has(image)) return Promise.resolve(maps.get(image));
    return new Promise(function (resolve, reject) {
      var first = !waiting.has(image);
      waiting.set(image, (waiting.get(image) || []).concat([{ resolve: resolve, reject: reject }]));
      if (!first) return;
      var script = document.createElement("script");
      script.src = "m" + String(image).padStart(5, "0") + ".js";
      script.onerror = function () {  // every waiter hears it; the next view tries again
        var error = new Error("cannot read " + script.src), waiters = waiting.get(image) || [];
        waiting.delete(image);
        script.remove();
        waiters.forEach(function (w) { w.reject(error); });
      };
      script.onload = function () { script.remove(); };
      document.head.appendChild(script);
    });
  }
  function decodeInto(canvas, url) {
    return new Promise(function (resolve) {
      var ctx = canvas.getContext("2d", { willReadFrequently: true });
      if (!url) { ctx.clearRect(0, 0, canvas.width, canvas.height); canvas.dataset.empty = "1"; resolve(null); return; }
      canvas.dataset.empty = "";
      var img = new Image();
      img.onload = function () {
        ctx.clearRect(0, 0, canvas.width, canvas.height);
        ctx.drawImage(img, 0, 0);
        resolve(ctx.getImageData(0, 0, canvas.width, canvas.height));
      };
      img.onerror = function () { resolve(null); };
      img.src = url;
    });
  }

  var colorClass = new Map();
  colors.forEach(function (c, k) {
    var n = parseInt(c.slice(1), 16);
    colorClass.set(((n >> 16) & 255) + "," + ((n >> 8) & 255) + "," + (n & 255), k);
  });
  function classAt(data, x, y, ignoreName) {
    if (!data) return "";
    var i = (y * data.width + x) * 4;
    var key = data.data[i] + "," + data.data[i + 1] + "," + data.data[i + 2];
    if (colorClass.has(key)) return className(colorClass.get(key));
    return ignoreName;
  }

  var view = { layers: { given: null, predicted: null }, map: null, item: null, scale: 1, x: 0, y: 0, preset: "photo" };

  // The detail's line of facts; a volume's size (z \u00d7 y \u00d7 x voxels) once its maps say it.
  function detailInfo(it, img, m) {
    var size = m && m.volume ? "volume " + m.volume.shape.join("\u00d7") + " (z\u00d7y\u00d7x)"
      : img.width + "\u00d7" + img.height;
    var info = ["image " + img.image, size];
    if (it.score !== null) info.push("score " + it.score.toFixed(4));
    info.push(it.size.toLocaleString("en-US") + (it.type === "region" ? " px" : " issue px"));
    if (pairText(it)) info.push("given " + className(it.given) + ", predicted " + className(it.predicted));
    if (it.kind) info.push(it.kind);
    if (it.type === "image" && img.regions) info.push(img.regions + " regions");
    return info.join(" \u00b7 ");
  }

  function showDetail(it) {
    view.item = it;
    $("hover").textContent = "";  // what was under the cursor, or a failure, was the last item's
    $("empty").hidden = !!it;
    $("detail-body").hidden = !it;
    if (!it) return;
    var img = byImage.get(it.image);
    $("d-title").textContent = it.type === "region" ? img.id + " \u2014 region " + it.region : String(img.id);
    $("d-info").textContent = detailInfo(it, img, null);
    var d = decisions[it.key];
    $("note").value = d ? d.note || "" : "";
    showDecision(it);
    $("to-region").disabled = it.type !== "region";
    var photo = $("photo");
    photo.hidden = !img.photo;
    if (img.photo) photo.src = "p" + String(img.image).padStart(5, "0") + ".jpg";
    else photo.removeAttribute("src");
    $("views").querySelector('[data-view="photo"]').textContent = img.photo ? "Photo + issues" : "Issues over blank";
    loadMaps(it.image).then(function (m) {
      if (view.item !== it) return;
      view.map = m;
      if (m.volume) $("d-info").textContent = detailInfo(it, img, m);
      ["given", "predicted", "issues"].forEach(function (name) {
        var c = $("c-" + name);
        c.width = m.w; c.height = m.h;
      });
      $("stage").style.width = m.w + "px";
      $("stage").style.height = m.h + "px";
      Promise.all([decodeInto($("c-given"), m.given), decodeInto($("c-predicted"), m.predicted),
        decodeInto($("c-issues"), m.issues)]).then(function (data) {
        if (view.item !== it) return;
        view.layers = { given: data[0], predicted: data[1] };
        placeBox(it, img, m);
        applyLayers();
        if (it.type === "region") zoomToRegion(); else fit();
        document.documentElement.dataset.detail = it.key;
      });
    }, function (error) { if (view.item === it) $("hover").textContent = error.message; });
    renderLegend(it);
  }

  function showDecision(it) {
    var d = decisions[it.key];
    $("decide").querySelectorAll("button").forEach(function (b) {
      b.classList.toggle("on", !!d && b.dataset.decision === d.decision && d.decision !== "");
    });
    $("d-state").textContent = d && d.decision ? DECISIONS[d.decision] + " at " + d.time : "not reviewed";
  }

  function renderLegend(it) {
    var legend = $("legend"), entries = [];
    names.forEach(function (name, k) {
      var entry = document.createElement("span");
      entry.className = "entry" + (k === it.given || k === it.predicted ? " present" : "");
      var swatch = document.createElement("i");
      swatch.style.background = colors[k];
      entry.appendChild(swatch);
      entry.appendChild(document.createTextNode(k + " " + name));
      entries.push(entry);
    });
    if (D.ignore.index !== null) {
      var ignored = document.createElement("span");
      ignored.className = "entry";
      var grey = document.createElement("i");
      grey.style.background = D.ignore.color;
      ignored.appendChild(grey);
      ignored.appendChild(document.createTextNode("ignored (" + D.ignore.index + ")"));
      entries.push(ignored);
    }
    legend.replaceChildren.apply(legend, entries);
  }

  function placeBox(it, img, m) {
    var box = $("box");
    box.hidden = it.type !== "region";
    if (it.type !== "region") return;
    var sx = m.w / img.width, sy = m.h / img.height;
    box.style.left = it.box[0] * sx + "px";
    box.style.top = it.box[1] * sy + "px";
    box.style.width = (it.box[2] - it.box[0] + 1) * sx + "px";
    box.style.height = (it.box[3] - it.box[1] + 1) * sy + "px";
  }

  function applyLayers() {
    var p = view.preset, img = view.item ? byImage.get(view.item.image) : null;
    var opacity = Number($("opacity").value) / 100;
    var base = p === "given" || p === "predicted" ? p : (p === "photo" && img && img.photo ? "photo" : "blank");
    $("photo").style.opacity = base === "photo" ? "1" : "0";
    ["given", "predicted", "issues"].forEach(function (name) {
      var c = $("c-" + name), on = $("o-" + name).checked;
      if (name === base) c.style.opacity = "1";
      else if (on) c.style.opacity = String(name === "issues" && base === "blank" ? 1 : opacity);
      else c.style.opacity = "0";
    });
    $("views").querySelectorAll("button[data-view]").forEach(function (b) {
      b.classList.toggle("on", b.dataset.view === p);
    });
  }

  function setPreset(p) {
    view.preset = p;
    $("o-issues").checked = p === "photo" || p === "issues";
    $("o-given").checked = false;
    $("o-predicted").checked = false;
    applyLayers();
  }

  // --- zoom and pan -------------------------------------------------------------------

  function transform() {
    $("stage").style.transform = "translate(" + view.x + "px," + view.y + "px) scale(" + view.scale + ")";
    $("box").style.borderWidth = 2 / view.scale + "px";
    $("box").style.outlineWidth = 1 / view.scale + "px";
  }
  function fit() {
    if (!view.map) return;
    var v = $("viewer");
    view.scale = Math.min(v.clientWidth / view.map.w, v.clientHeight / view.map.h);
    view.x = (v.clientWidth - view.map.w * view.scale) / 2;
    view.y = (v.clientHeight - view.map.h * view.scale) / 2;
    transform();
  }
  function zoomToRegion() {
    var it = view.item;
    if (!view.map || !it || it.type !== "region") return;
    var img = byImage.get(it.image), v = $("viewer");
    var sx = view.map.w / img.width, sy = view.map.h / img.height;
    var w = (it.box[2] - it.box[0] + 1) * sx, h = (it.box[3] - it.box[1] + 1) * sy;
    var cx = (it.box[0] * sx + w / 2), cy = (it.box[1] * sy + h / 2);
    view.scale = Math.max(0.1, Math.min(32, v.clientWidth / (w * 4), v.clientHeight / (h * 4)));
    view.x = v.clientWidth / 2 - cx * view.scale;
    view.y = v.clientHeight / 2 - cy * view.scale;
    transform();
  }
  function zoomAt(factor, clientX, clientY) {
    var r = $("viewer").getBoundingClientRect();
    var px = clientX - r.left, py = clientY - r.top;
    var scale = Math.max(0.05, Math.min(64, view.scale * factor));
    view.x = px - (px - view.x) * scale / view.scale;
    view.y = py - (py - view.y) * scale / view.scale;
    view.scale = scale;
    transform();
  }

  function hover(e) {
    if (!view.map || !view.item) return;
    var r = $("stage").getBoundingClientRect();
    var x = Math.floor((e.clientX - r.left) / r.width * view.map.w);
    var y = Math.floor((e.clientY - r.top) / r.height * view.map.h);
    if (x < 0 || y < 0 || x >= view.map.w || y >= view.map.h) { $("hover").textContent = ""; return; }
    var img = byImage.get(view.item.image);
    var fx = Math.floor((x + 0.5) * img.width / view.map.w), fy = Math.floor((y + 0.5) * img.height / view.map.h);
    var given = classAt(view.layers.given, x, y, "ignored");
    var predicted = classAt(view.layers.predicted, x, y, "");
    var place = view.map.volume ? voxelAt(view.map.volume, fx, fy) : "x " + fx + ", y " + fy;
    $("hover").textContent = place + " \u00b7 given: " + given + " \u00b7 predicted: " + predicted;
  }

  // A volume's picture is views of it side by side: name the voxel under (fx, fy), as
  // NIfTI viewers number them, by the nearest-voxel rule the views were drawn with.
  function voxelAt(volume, fx, fy) {
    var z = volume.shape[0], y = volume.shape[1], x = volume.shape[2];
    var axes = { axial: [y, x], coronal: [z, x], sagittal: [z, y] };
    for (var i = 0; i < volume.tiles.length; i++) {
      var t = volume.tiles[i], top = t[2], left = t[3], h = t[4], w = t[5];
      if (fx < left || fy < top || fx >= left + w || fy >= top + h) continue;
      var size = axes[t[0]];
      var row = Math.floor((fy - top + 0.5) * size[0] / h), col = Math.floor((fx - left + 0.5) * size[1] / w);
      var voxel = t[0] === "axial" ? [col, row, t[1]] : t[0] === "coronal" ? [col, t[1], row] : [t[1], col, row];
      return t[0] + " \u00b7 voxel x " + voxel[0] + ", y " + voxel[1] + ", z " + voxel[2];
    }
    return "between views";
  }

  function wireViewer() {
    var v = $("viewer"), drag = null;
    v.addEventListener("wheel", function (e) {
      e.preventDefault();
      zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX, e.clientY);
    }, { passive: false });
    v.addEventListener("mousedown", function (e) {
      drag = { x: e.clientX - view.x, y: e.clientY - view.y };
      v.classList.add("dragging");
    });
    window.addEventListener("mouseup", function () { drag = null; v.classList.remove("dragging"); });
    v.addEventListener("mousemove", function (e) {
      if (drag) { view.x = e.clientX - drag.x; view.y = e.clientY - drag.y; transform(); }
      hover(e);
    });
    $("fit").addEventListener("click", fit);
    $("to-region").addEventListener("click", zoomToRegion);
    $("views").querySelectorAll("button[data-view]").forEach(function (b) {
      b.addEventListener("click", function () { setPreset(b.dataset.view); });
    });
    ["o-issues", "o-given", "o-predicted", "opacity"].forEach(function (id) {
      $(id).addEventListener("input", applyLayers);
    });
  }

  // --- deciding -----------------------------------------------------------------------

  function decide(decision) {
    var it = currentItem();
    if (!it) return;
    if (decision) {
      decisions[it.key] = { decision: decision, note: $("note").value,
        time: new Date().toISOString(), item: described(it) };
    } else {
      delete decisions[it.key];
    }
    save();
    showDecision(it);
    renderCounts();
    if (decision && state.current + 1 < state.view.length) select(state.current + 1);
    else renderRows();
  }

  function noteChanged() {
    var it = currentItem();
    if (!it || !decisions[it.key]) return;
    decisions[it.key].note = $("note").value;
    save();
  }

  function onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var tag = e.target && e.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    var actions = {
      j: function () { select(state.current < 0 ? 0 : state.current + 1); },
      k: function () { select(Math.max(0, state.current - 1)); },
      y: function () { decide("real_error"); },
      n: function () { decide("false_alarm"); },
      u: function () { decide("unsure"); }
    };
    if (actions[e.key]) { e.preventDefault(); actions[e.key](); }
  }

  // --- export -------------------------------------------------------------------------

  var EXPORT_COLUMNS = ["id", "region", "decision", "note", "time", "image", "given_class",
    "predicted_class", "given_name", "predicted_name", "x0", "y0", "x1", "y1", "score", "run"];

  function csvCell(value) {
    var s = value === null || value === undefined ? "" : String(value);
    if (typeof value === "string" && /^[=+\-@\t\r']/.test(s)) s = "'" + s;  // as csv_cell
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  // What a decision's row says of its item (kept with the decision, so that decisions
  // made on a page of this run that listed other items, e.g. rendered with another
  // --top, are exported too).
  function described(it) {
    var box = it.box || ["", "", "", ""];
    return [String(it.id), it.region, it.image, it.given >= 0 ? it.given : "",
      it.predicted >= 0 ? it.predicted : "", className(it.given), className(it.predicted),
      box[0], box[1], box[2], box[3], it.score === null ? "" : it.score];
  }

  function exportRows() {
    var known = new Map();
    images.concat(regions).forEach(function (it) { known.set(it.key, it); });
    var rows = [];
    Object.keys(decisions).forEach(function (key) {
      var d = decisions[key], it = known.get(key), f = it ? described(it) : d.item;
      if (!f || !d.decision) return;
      rows.push([f[0], f[1], d.decision, d.note || "", d.time].concat(f.slice(2), [D.fingerprint]));
    });
    rows.sort(function (a, b) { return a[4] < b[4] ? -1 : a[4] > b[4] ? 1 : 0; });
    return [EXPORT_COLUMNS].concat(rows);
  }

  function exportCsv() {
    var text = exportRows().map(function (row) { return row.map(csvCell).join(","); }).join("\n") + "\n";
    var url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    var a = document.createElement("a");
    a.href = url;
    a.download = "decisions.csv";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 0);
  }

  // --- start --------------------------------------------------------------------------

  function start() {
    var notes = $("notes");
    D.notes.forEach(function (n) { var li = document.createElement("li"); li.textContent = n; notes.appendChild(li); });
    var mode = $("mode");
    if (regions.length) mode.add(new Option("regions (" + regions.length + ")", "regions"));
    mode.add(new Option("images (" + images.length + ")", "images"));
    mode.value = state.mode;
    mode.addEventListener("change", function () {
      state.mode = mode.value;
      state.sort = { column: "score", dir: 1 };
      fillFilters();
      rebuild(null);
    });
    ["f-class", "f-pair", "f-kind", "f-decision"].forEach(function (id) {
      $(id).addEventListener("change", function () { rebuild(currentItem() && currentItem().key); });
    });
    $("scroller").addEventListener("scroll", renderRows, { passive: true });
    window.addEventListener("resize", renderRows);
    $("decide").querySelectorAll("button").forEach(function (b) {
      b.addEventListener("click", function () { decide(b.dataset.decision); });
    });
    $("note").addEventListener("input", noteChanged);
    $("export").addEventListener("click", exportCsv);
    document.addEventListener("keydown", onKey);
    wireViewer();
    fillFilters();
    rebuild(null);
    setPreset("photo");
    if (!items().length) $("empty").textContent = "Nothing is flagged after the filters.";
    window.reviewReady = performance.now();
    document.documentElement.dataset.ready = "1";
  }

  start();
})();
