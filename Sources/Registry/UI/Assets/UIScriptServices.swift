extension UIScript {
    /// Traffic from the collector (rates from federated samples), the services list and one service's page.
    static let services = #"""
/** Parses Prometheus text exposition: samples with their labels and, when given, timestamps. */
function parseExposition(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = line.match(/^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?\s*$/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    samples.push({ name: m[1], labels, value: parseFloat(m[3]), t: m[4] ? Number(m[4]) : null });
  }
  return samples;
}

/**
 * Request rate, 5xx ratio and p99 per service over the last minute, from the sidecars' inbound
 * counters and histograms as the collector federates them (each sample with its scrape time).
 */
class Traffic {
  constructor(matchers) {
    this.matchers = matchers;
    this.history = new Map();
    this.state = 'waiting';
    this.message = '';
    this.latest = [];
  }

  async sample(signal) {
    const query = this.matchers.map(m => 'match[]=' + enc(m)).join('&');
    try {
      const answer = await api('/v1/internal/ui/metrics-proxy/federate?' + query, { signal });
      const now = Date.now();
      this.latest = parseExposition(answer.text);
      for (const s of this.latest) {
        const key = s.name + JSON.stringify(s.labels);
        const points = this.history.get(key) || [];
        const t = s.t ?? now;
        if (!points.length || points[points.length - 1].t !== t) points.push({ t, v: s.value });
        while (points.length > 2 && t - points[0].t > 65000) points.shift();
        this.history.set(key, points);
      }
      this.state = 'ok';
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      this.state = error.status === 503 ? 'none' : error.status === 403 ? 'denied' : 'error';
      this.message = describe(error);
    }
  }

  /** Increase per second of one series over the window; null until two scrapes were seen. */
  rate(sample) {
    const points = this.history.get(sample.name + JSON.stringify(sample.labels)) || [];
    if (points.length < 2) return null;
    const first = points[0], last = points[points.length - 1];
    const increase = last.v >= first.v ? last.v - first.v : last.v;
    return increase / ((last.t - first.t) / 1000);
  }

  /** { rate, errors, p99 } of the series `select` accepts. */
  summary(select) {
    let rate = null, errors = 0;
    const buckets = new Map();
    for (const s of this.latest) {
      if (!select(s.labels)) continue;
      const r = this.rate(s);
      if (r == null) continue;
      if (s.name === 'trellis_sidecar_requests_total') {
        rate = (rate || 0) + r;
        if (s.labels.code_class === '5xx') errors += r;
      } else if (s.name === 'trellis_sidecar_request_duration_seconds_bucket') {
        buckets.set(s.labels.le, (buckets.get(s.labels.le) || 0) + r);
      }
    }
    return { rate, errors: rate ? errors / rate : rate === 0 ? 0 : null, p99: quantile(0.99, buckets) };
  }

  /** The latest value per `key(labels)` of the series named `name`. */
  values(name, key) {
    const out = new Map();
    for (const s of this.latest) if (s.name === name) out.set(key(s.labels), (out.get(key(s.labels)) || 0) + s.value);
    return out;
  }

  note() {
    if (this.state === 'none') return 'No collector is registered, so request rates, errors and latency are not shown; run trellis collector (trellis up starts one).';
    if (this.state === 'denied') return 'Traffic is hidden: ' + this.message + ' (the metrics proxy needs service:read and node:read on every name).';
    if (this.state === 'error') return 'Traffic is unavailable: ' + this.message;
    return '';
  }
}

/** histogram_quantile over cumulative bucket rates keyed by `le`, as PromQL interpolates. */
function quantile(q, buckets) {
  const sorted = [...buckets.entries()].map(([le, v]) => [le === '+Inf' ? Infinity : parseFloat(le), v]).sort((a, b) => a[0] - b[0]);
  if (!sorted.length) return null;
  const total = sorted[sorted.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let previousBound = 0, previousCount = 0;
  for (const [bound, count] of sorted) {
    if (count >= rank) {
      if (bound === Infinity) return previousBound;
      return previousBound + (bound - previousBound) * ((rank - previousCount) / Math.max(count - previousCount, 1e-9));
    }
    previousBound = bound; previousCount = count;
  }
  return previousBound;
}

function inboundMatchers(extra) {
  return ['trellis_sidecar_requests_total', 'trellis_sidecar_request_duration_seconds_bucket']
    .map(name => name + '{direction="inbound"' + (extra || '') + '}');
}

function trafficCells(traffic, t) {
  if (traffic.note()) return '<td class="num muted">–</td><td class="num muted">–</td><td class="num muted">–</td>';
  if (t.rate === 0) return '<td class="num">0</td><td class="num muted">–</td><td class="num muted">–</td>';
  const errorClass = t.errors > 0.05 ? ' critical' : t.errors > 0 ? ' warning' : '';
  return '<td class="num">' + formatRate(t.rate) + '</td><td class="num' + errorClass + '">' + formatRatio(t.errors) +
    '</td><td class="num">' + formatSeconds(t.p99) + '</td>';
}

function healthCell(s) {
  const parts = [];
  if (s.InstancesCritical) parts.push('<span class="st critical">' + s.InstancesCritical + ' critical</span>');
  if (s.InstancesWarning) parts.push('<span class="st warning">' + s.InstancesWarning + ' warning</span>');
  if (s.InstancesPassing) parts.push('<span class="st passing">' + s.InstancesPassing + ' passing</span>');
  return parts.join(' ') || '<span class="muted">no instances</span>';
}

route(/^#\/services\/?$/, 'services', async signal => {
  main.innerHTML = '<h1>Services</h1><p class="muted small" id="count">Loading…</p>' +
    '<div class="row"><input type="search" id="filter" placeholder="Filter by name or tag" aria-label="Filter services by name or tag"></div>' +
    '<div id="trafficNote"></div><div id="listError"></div><div class="scroll"><table id="services"><thead><tr><th>Service</th><th>Health</th>' +
    '<th class="num">Instances</th><th class="hide-narrow">Tags</th><th class="num">Req/s</th><th class="num">5xx</th><th class="num">p99</th></tr></thead>' +
    '<tbody></tbody></table></div>';
  const filter = document.getElementById('filter');
  const traffic = new Traffic(inboundMatchers());
  let services = [];
  const render = () => {
    const words = filter.value.trim().toLowerCase();
    const shown = services.filter(s => !words || s.Name.toLowerCase().includes(words) || s.Tags.some(t => t.toLowerCase().includes(words)));
    const severity = s => (s.InstancesCritical ? 2 : 0) + (s.InstancesWarning ? 1 : 0);
    shown.sort((a, b) => severity(b) - severity(a) || a.Name.localeCompare(b.Name));
    document.getElementById('count').textContent = services.length + ' services' + (shown.length !== services.length ? ', ' + shown.length + ' shown' : '') +
      ' · updates live';
    document.querySelector('#services tbody').innerHTML = shown.map(s => {
      const status = s.InstancesCritical ? 'critical' : s.InstancesWarning ? 'warning' : 'passing';
      return '<tr class="row-' + status + '" data-service="' + esc(s.Name) + '" data-status="' + status + '"><td><a href="#/services/' + enc(s.Name) + '">' +
        esc(s.Name) + '</a></td><td>' + healthCell(s) + '</td><td class="num">' + s.InstanceCount + '</td><td class="hide-narrow">' +
        s.Tags.map(t => '<span class="tag">' + esc(t) + '</span>').join('') + '</td>' +
        trafficCells(traffic, traffic.summary(l => l.service === s.Name)) + '</tr>';
    }).join('');
    document.getElementById('trafficNote').innerHTML = traffic.note() ? '<p class="notice">' + esc(traffic.note()) + '</p>' : '';
  };
  filter.addEventListener('input', render);
  every(5000, signal, async () => { await traffic.sample(signal); render(); });
  await watch('/v1/internal/ui/services', signal, answer => {
    services = answer.json();
    document.getElementById('listError').innerHTML = '';
    render();
  }, error => { document.getElementById('listError').innerHTML = errorBox(error); });
});

route(/^#\/services\/(.+)$/, 'services', async (signal, name) => {
  main.innerHTML = '<p class="crumbs"><a href="#/services">Services</a> /</p><h1>' + esc(name) + '</h1>' +
    '<p id="summary" class="muted">Loading…</p><div id="trafficNote"></div>' +
    '<h2>Instances</h2><div id="instances" class="scroll"></div>' +
    '<h2>Upstreams and downstreams</h2><div id="graph"></div>' +
    '<h2>Policy in force</h2><div id="policy" class="muted">Loading…</div>' +
    '<h2>Recent logs</h2><form class="row" id="logForm"><input type="search" id="logFilter" placeholder="Trace id or text" ' +
    'aria-label="Filter log lines by trace id or text"><button type="submit">Filter</button></form><div id="logs"></div>';
  const traffic = new Traffic(inboundMatchers(',service="' + name + '"').concat(['trellis_sidecar_service_restarts_total{service="' + name + '"}']));
  let entries = [], topology = null, ejected = new Map(), policyShown = false;

  const renderInstances = () => {
    const restarts = traffic.values('trellis_sidecar_service_restarts_total', l => l.instance);
    const statuses = entries.map(e => worst(e.Checks.map(c => c.Status)));
    const t = traffic.summary(l => l.service === name);
    document.getElementById('summary').innerHTML = entries.length + ' instances: ' +
      ['passing', 'warning', 'critical'].map(s => statuses.filter(x => x === s).length ? '<span class="st ' + s + '">' + statuses.filter(x => x === s).length + ' ' + s + '</span>' : '').join(' ') +
      (traffic.note() ? '' : ' · ' + formatRate(t.rate) + ' req/s · ' + formatRatio(t.errors) + ' 5xx · p99 ' + formatSeconds(t.p99));
    document.getElementById('trafficNote').innerHTML = traffic.note() ? '<p class="notice">' + esc(traffic.note()) + '</p>' : '';
    document.getElementById('instances').innerHTML = entries.length === 0 ? '<p class="muted">No instances are registered.</p>' :
      '<table><thead><tr><th>Instance</th><th>Address</th><th>Health</th><th>Checks</th><th class="num">Restarts</th><th>Ejected</th></tr></thead><tbody>' +
      entries.map((e, i) => {
        const s = e.Service, status = statuses[i];
        const by = ejected.get(s.ID) || [];
        return '<tr class="row-' + status + '" data-instance="' + esc(s.ID) + '" data-status="' + status + '"><td>' + esc(s.ID) + '</td><td>' + esc((s.Address || e.Node.Address) + ':' + s.Port) +
          '</td><td><span class="st ' + statusClass(status) + '">' + esc(status) + '</span></td><td>' + e.Checks.map(c =>
            '<details><summary><span class="st ' + statusClass(c.Status) + '">' + esc(c.Name || c.CheckID) + '</span></summary><pre>' +
            esc(c.Output || '(no output)') + '</pre></details>').join('') + '</td><td class="num">' +
          (restarts.has(s.ID) ? restarts.get(s.ID) : '–') + '</td><td>' + (by.length ? '<span class="st critical">ejected by ' + esc(by.join(', ')) + '</span>' : 'no') + '</td></tr>';
      }).join('') + '</tbody></table>';
  };

  const renderGraph = () => {
    if (!topology) return;
    const up = topology.Upstreams, down = topology.Downstreams;
    if (!up.length && !down.length) { document.getElementById('graph').innerHTML = '<p class="muted">No sidecar declares a call to or from ' + esc(name) + '.</p>'; return; }
    const rows = Math.max(up.length, down.length, 1), height = rows * 54 + 20, width = 760;
    const node = (s, x, y, cls) => '<a href="#/services/' + enc(s.Name) + '"><rect x="' + x + '" y="' + y + '" width="200" height="36" class="' + cls +
      (s.InstancesCritical ? ' crit' : '') + '"></rect><text x="' + (x + 12) + '" y="' + (y + 23) + '">' + esc(s.Name) + ' (' + s.InstancesPassing + '/' + s.InstanceCount + ')</text></a>';
    const cy = height / 2 - 18;
    let svg = '<svg class="graph" viewBox="0 0 ' + width + ' ' + height + '" role="img" aria-label="Downstreams of ' + esc(name) + ' on the left, upstreams on the right">' +
      '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#7d8b99"></path></marker></defs>';
    down.forEach((s, i) => {
      const y = 10 + i * 54 + (rows - down.length) * 27;
      svg += '<path class="' + (s.Intention.Allowed ? '' : 'denied') + '" d="M210,' + (y + 18) + ' C250,' + (y + 18) + ' 240,' + (cy + 18) + ' 278,' + (cy + 18) + '"></path>' + node(s, 10, y, '');
    });
    up.forEach((s, i) => {
      const y = 10 + i * 54 + (rows - up.length) * 27;
      svg += '<path class="' + (s.Intention.Allowed ? '' : 'denied') + '" d="M480,' + (cy + 18) + ' C520,' + (cy + 18) + ' 510,' + (y + 18) + ' 548,' + (y + 18) + '"></path>' + node(s, 550, y, '');
    });
    svg += '<rect x="280" y="' + cy + '" width="200" height="36" class="self"></rect><text x="292" y="' + (cy + 23) + '">' + esc(name) + '</text></svg>';
    document.getElementById('graph').innerHTML = svg + '<p class="small muted">Arrows point from caller to callee; dashed red: intentions deny the call.</p>';
  };

  const loadPolicy = async () => {
    const target = entries.find(e => e.Service.Meta && e.Service.Meta.trellis_sidecar_admin_port);
    if (!target) { document.getElementById('policy').innerHTML = '<p class="muted">No instance runs behind a Trellis sidecar.</p>'; return; }
    try {
      const config = (await api('/v1/internal/ui/sidecar/' + enc(target.Service.ID) + '/config', { signal })).json();
      document.getElementById('policy').innerHTML = '<p class="small">Source: <code>' + esc(config.source) + '</code> (as applied by ' + esc(target.Service.ID) +
        ')</p><pre>' + esc(JSON.stringify(config.policy, null, 2)) + '</pre>';
      policyShown = true;
    } catch (error) { if (error.name !== 'AbortError') document.getElementById('policy').innerHTML = errorBox(error); }
  };

  /** Which instances of this service the callers' sidecars eject right now (outlier detection). */
  const loadEjections = async () => {
    const found = new Map();
    for (const caller of (topology ? topology.Downstreams : []).slice(0, 10)) {
      const callers = (await api('/v1/health/service/' + enc(caller.Name), { signal })).json().slice(0, 10);
      for (const c of callers) {
        try {
          const clusters = (await api('/v1/internal/ui/sidecar/' + enc(c.Service.ID) + '/clusters', { signal })).json();
          for (const cluster of Object.values(clusters)) {
            if (cluster.service !== name) continue;
            for (const instance of cluster.instances || []) {
              if (instance.health === 'ejected') found.set(instance.id, (found.get(instance.id) || []).concat([c.Service.ID]));
            }
          }
        } catch (error) { if (error.name === 'AbortError') throw error; }
      }
    }
    ejected = found;
  };

  every(5000, signal, async () => {
    await traffic.sample(signal);
    await loadEjections();
    renderInstances();
  });
  watch('/v1/internal/ui/service-topology/' + enc(name), signal, answer => { topology = answer.json(); renderGraph(); },
    error => { document.getElementById('graph').innerHTML = errorBox(error); });
  showLogs(signal, name, '');
  document.getElementById('logForm').onsubmit = event => { event.preventDefault(); showLogs(signal, name, document.getElementById('logFilter').value.trim()); };
  await watch('/v1/health/service/' + enc(name), signal, answer => {
    entries = answer.json();
    renderInstances();
    if (!policyShown) loadPolicy();
  },
    error => { document.getElementById('instances').innerHTML = errorBox(error); });
});

/** The service's last 100 log lines (service output and access log) from the collector, newest first. */
async function showLogs(signal, service, text) {
  const target = document.getElementById('logs');
  let query = '{service="' + service.replace(/["\\]/g, '\\$&') + '"}';
  if (text) query += ' |= "' + text.replace(/["\\]/g, '\\$&') + '"';
  try {
    const answer = (await api('/v1/internal/ui/metrics-proxy/loki/api/v1/query_range?query=' + enc(query) + '&limit=100&since=1h', { signal })).json();
    const lines = logLines(answer).sort((a, b) => b.ns - a.ns);
    target.innerHTML = lines.length === 0 ? '<p class="muted">No log lines' + (text ? ' contain ' + esc(text) : '') + ' in the last hour.</p>' :
      '<div class="scroll"><table class="logs"><thead><tr><th>Time</th><th>Instance</th><th>Line</th></tr></thead><tbody>' +
      lines.map(l => '<tr><td>' + esc(new Date(l.ns / 1e6).toISOString().slice(11, 23)) + '</td><td>' + esc(l.labels.instance || '') + '</td><td class="msg">' +
        (l.fields && l.fields.trace_id ? '<a href="#/trace/' + enc(l.fields.trace_id) + '">trace ' + esc(l.fields.trace_id.slice(0, 8)) + '…</a> ' : '') +
        esc(summarize(l)) + '</td></tr>').join('') + '</tbody></table></div>';
  } catch (error) {
    if (error.name !== 'AbortError') target.innerHTML = '<p class="notice">' + esc(error.status === 503 ? 'Logs come from a collector, and none is registered.' : describe(error)) + '</p>';
  }
}

/** Lines of a Loki streams answer, each with its labels, time (ns) and JSON fields when it is JSON. */
function logLines(answer) {
  const out = [];
  for (const stream of (answer.data && answer.data.result) || []) {
    for (const [ns, line] of stream.values) {
      let fields = null;
      if (line[0] === '{') { try { fields = JSON.parse(line); } catch (_) { fields = null; } }
      out.push({ ns: Number(ns), line, labels: stream.stream, fields });
    }
  }
  return out;
}
/** A log line in a few words: a hop as "in: GET /x → 200 in 3.1 ms", a JSON line as its message and fields. */
function summarize(l) {
  const f = l.fields;
  if (!f) return l.line;
  if (f.msg === 'access') {
    return (f.direction === 'inbound' ? 'in: ' : 'out to ' + f.upstream + ': ') + f.method + ' ' + f.path + ' → ' + f.status + ' in ' + f.duration_ms + ' ms' +
      (f.local_reason ? ' (' + f.local_reason + ')' : '');
  }
  const skip = new Set(['ts', 'time', 'timestamp', 'msg', 'message', 'service', 'instance', 'trace_id', 'span_id', 'parent_span_id', 'request_id']);
  const rest = Object.entries(f).filter(([k]) => !skip.has(k)).map(([k, v]) => k + '=' + (typeof v === 'string' ? v : JSON.stringify(v)));
  return [f.msg || f.message || ''].concat(rest).join(' ');
}
"""#
}
