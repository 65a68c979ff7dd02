(() => {
  "use strict";
  const data = JSON.parse(document.getElementById("afb-data").textContent);
  const F = {};
  data.fields.forEach((f, i) => { F[f] = i; });
  const rows = data.rows;
  const PAGE = 50;
  const $ = (id) => document.getElementById(id);
  const filters = ["model", "variant", "tier", "judge", "af"];
  let selected = rows;
  let page = 0;
  for (const f of filters) {
    const sel = $("afb-f-" + f);
    for (const v of data.options[f]) {
      const o = document.createElement("option");
      o.value = v;
      o.textContent = v;
      sel.appendChild(o);
    }
    sel.addEventListener("change", apply);
  }
  $("afb-f-disagree").addEventListener("change", apply);
  $("afb-f-text").addEventListener("input", apply);
  $("afb-prev").addEventListener("click", () => { if (page > 0) { page -= 1; draw(); } });
  $("afb-next").addEventListener("click", () => { if ((page + 1) * PAGE < selected.length) { page += 1; draw(); } });
  function apply() {
    const want = filters.map((f) => [f, $("afb-f-" + f).value]).filter((p) => p[1] !== "");
    const disagree = $("afb-f-disagree").checked;
    const q = $("afb-f-text").value.trim().toLowerCase();
    selected = rows.filter((r) => {
      for (const [f, v] of want) { if (r[F[f]] !== v) return false; }
      if (disagree && !r[F.disagree]) return false;
      if (q) {
        const hay = [r[F.id], r[F.request], r[F.output], r[F.scratchpad], r[F.failure], r[F.judge_error]].join("\n").toLowerCase();
        if (!hay.includes(q)) return false;
      }
      return true;
    });
    page = 0;
    draw();
  }
  function cell(tr, value, cls) {
    const td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "" : String(value);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function block(parent, label, text) {
    if (text === null || text === undefined || text === "") return;
    const d = document.createElement("details");
    const s = document.createElement("summary");
    s.textContent = label;
    const pre = document.createElement("pre");
    pre.textContent = text;
    d.appendChild(s);
    d.appendChild(pre);
    parent.appendChild(d);
  }
  function line(parent, text) {
    const p = document.createElement("p");
    p.className = "fail";
    p.textContent = text;
    parent.appendChild(p);
  }
  function draw() {
    const body = $("afb-rows");
    body.replaceChildren();
    const start = page * PAGE;
    const slice = selected.slice(start, start + PAGE);
    for (const r of slice) {
      const tr = document.createElement("tr");
      cell(tr, r[F.id]);
      cell(tr, r[F.model]);
      cell(tr, r[F.variant]);
      cell(tr, r[F.tier] + " (" + r[F.condition] + ")");
      cell(tr, r[F.prompt] + " / " + r[F.sample], "num");
      cell(tr, r[F.status] + (r[F.turns] === null ? "" : " · " + r[F.turns] + (r[F.turns] === 1 ? " turn" : " turns")));
      cell(tr, r[F.proxy]);
      cell(tr, r[F.judge]);
      cell(tr, (r[F.convincing] === null ? "–" : r[F.convincing]) + " / " + (r[F.specific] === null ? "–" : r[F.specific]), "num");
      cell(tr, r[F.af] + (r[F.af_votes] ? " (" + r[F.af_votes] + ")" : ""));
      const td = cell(tr, "");
      if (r[F.failure]) line(td, "failed: " + r[F.failure]);
      if (r[F.judge_error]) line(td, "judge: " + r[F.judge_error]);
      block(td, "request", r[F.request]);
      block(td, "final output", r[F.output]);
      block(td, "scratchpad", r[F.scratchpad]);
      body.appendChild(tr);
    }
    const shown = slice.length ? (start + 1) + "–" + (start + slice.length) : "none";
    $("afb-count").textContent = selected.length + " of " + rows.length + " embedded conversations match; showing " + shown + ".";
    $("afb-prev").disabled = page === 0;
    $("afb-next").disabled = (page + 1) * PAGE >= selected.length;
  }
  apply();
})();
