/// The UI's stylesheet: system fonts, readable from a phone to 1280 px and beyond.
enum UIStyle {
    static let css = #"""
:root { --fg: #1d232b; --muted: #5f6b78; --line: #d9dee4; --bg: #fff; --soft: #f4f6f8; --accent: #1a5fb4;
  --pass: #1f7a3a; --warn: #9a6700; --crit: #b42318; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: var(--bg); }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, textarea:focus-visible, select:focus-visible, summary:focus-visible {
  outline: 3px solid #f5a623; outline-offset: 1px; }
.skip { position: absolute; left: -999px; } .skip:focus { left: 8px; top: 8px; background: #fff; padding: 4px 8px; z-index: 9; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 18px; padding: 10px 20px; background: #16202c; color: #fff; }
header a { color: #dfe6ee; text-decoration: none; padding: 4px 2px; }
header a.brand { font-weight: 700; color: #fff; font-size: 1.1rem; }
header nav { display: flex; flex-wrap: wrap; gap: 4px 14px; }
header nav a[aria-current="page"] { color: #fff; border-bottom: 2px solid #7fb3ff; }
#who { margin-left: auto; font-size: .9rem; color: #c9d3de; display: flex; gap: 10px; align-items: center; }
#who button { font-size: .85rem; }
#banner { padding: 10px 20px; background: #fdecea; color: var(--crit); border-bottom: 1px solid #f3c2bd; font-weight: 600; }
main { padding: 16px 20px 40px; max-width: 1400px; margin: 0 auto; }
main:focus { outline: none; }
h1 { font-size: 1.5rem; margin: 4px 0 6px; } h2 { font-size: 1.15rem; margin: 26px 0 8px; }
.muted { color: var(--muted); } .small { font-size: .88rem; }
.row { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: .82rem; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); background: var(--soft); position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.row-critical td:first-child { box-shadow: inset 4px 0 var(--crit); } tr.row-warning td:first-child { box-shadow: inset 4px 0 var(--warn); }
.tag { display: inline-block; background: var(--soft); border: 1px solid var(--line); border-radius: 10px; padding: 0 7px; margin: 1px 2px; font-size: .8rem; }
.st { font-weight: 600; white-space: nowrap; } .passing { color: var(--pass); } .warning { color: var(--warn); } .critical { color: var(--crit); }
.st::before { content: "● "; }
input, textarea, select, button { font: inherit; }
input[type=search], input[type=text], input[type=password], textarea, select { padding: 6px 8px; border: 1px solid #b8c1cb; border-radius: 4px; background: #fff; }
input[type=search] { width: min(420px, 100%); }
textarea { width: 100%; min-height: 9rem; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .9rem; }
button { padding: 6px 14px; border: 1px solid #9aa7b4; border-radius: 4px; background: var(--soft); cursor: pointer; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.danger { color: var(--crit); border-color: #e4a8a2; background: #fff; }
pre, code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .86rem; }
pre { background: var(--soft); border: 1px solid var(--line); padding: 10px; overflow: auto; max-height: 28rem; white-space: pre-wrap; word-break: break-word; }
.box { border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; margin: 10px 0; }
.notice { background: #fff8e1; border: 1px solid #f0d68a; border-radius: 6px; padding: 10px 14px; margin: 10px 0; }
.error { background: #fdecea; border: 1px solid #f3c2bd; color: var(--crit); border-radius: 6px; padding: 10px 14px; margin: 10px 0; }
.ok { background: #e8f5ec; border: 1px solid #b7dfc3; color: var(--pass); border-radius: 6px; padding: 10px 14px; margin: 10px 0; }
form.stack { display: grid; gap: 8px; max-width: 720px; } form.stack label { display: grid; gap: 3px; font-weight: 600; font-size: .92rem; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 0 24px; }
.crumbs a, .crumbs span { margin-right: 4px; }
.logs td { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .82rem; }
.logs td.msg { word-break: break-word; }
th.wide { width: 35%; }
.wf { position: relative; height: 18px; background: var(--soft); min-width: 160px; }
.wf span { position: absolute; top: 3px; height: 12px; background: #5b8fd6; border-radius: 2px; min-width: 2px; }
.wf span.err { background: var(--crit); } .wf i { position: absolute; top: 2px; width: 2px; height: 14px; background: #7a56c2; }
svg.graph { width: 100%; max-width: 900px; height: auto; }
svg.graph rect { fill: #fff; stroke: #7d8b99; rx: 6; } svg.graph rect.self { fill: #e9f1fd; stroke: var(--accent); }
svg.graph rect.crit { stroke: var(--crit); stroke-width: 2; } svg.graph text { font-size: 13px; fill: var(--fg); }
svg.graph path { stroke: #7d8b99; fill: none; stroke-width: 1.6; marker-end: url(#arrow); } svg.graph path.denied { stroke: var(--crit); stroke-dasharray: 5 4; }
svg.graph a:focus rect { stroke: #f5a623; stroke-width: 3; }
@media (max-width: 640px) { main { padding: 12px; } header { padding: 8px 12px; } th, td { padding: 6px; } .hide-narrow { display: none; } }
"""#
}
