extension UIScript {
    /// One trace across services: every access-log and service log line of its hops, as a waterfall.
    static let trace = #"""
route(/^#\/trace\/?(.*)$/, 'trace', async (signal, traceID) => {
  main.innerHTML = '<h1>Trace</h1><form class="row" id="traceForm"><input type="search" id="traceID" placeholder="Trace id (32 hex digits)" ' +
    'aria-label="Trace id" value="' + esc(traceID) + '"><button class="primary" type="submit">Show</button></form><div id="trace"></div>';
  document.getElementById('traceForm').onsubmit = event => {
    event.preventDefault();
    location.hash = '#/trace/' + enc(document.getElementById('traceID').value.trim());
  };
  if (!traceID) {
    document.getElementById('trace').innerHTML = '<p class="muted">Enter a trace id, or follow one from a service\'s logs. Sidecars start a trace ' +
      'for each request without one (W3C traceparent) and log its id with every hop.</p>';
    return;
  }
  if (!/^[0-9a-fA-F]{16,32}$/.test(traceID)) {
    document.getElementById('trace').innerHTML = '<div class="error">A trace id is 16 or 32 hexadecimal digits.</div>';
    return;
  }
  // Lines arrive within a second or two of the request: keep looking while the page is open.
  await every(3000, signal, async () => {
    try {
      const query = '{job="trellis-sidecar"} |= "' + traceID.toLowerCase() + '"';
      const answer = (await api('/v1/internal/ui/metrics-proxy/loki/api/v1/query_range?query=' + enc(query) +
        '&limit=2000&direction=forward&since=24h', { signal })).json();
      renderTrace(traceID.toLowerCase(), logLines(answer).filter(l => !l.fields || !l.fields.trace_id || l.fields.trace_id === traceID.toLowerCase()));
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      document.getElementById('trace').innerHTML = error.status === 503 ? '<p class="notice">Traces are read from the logs the collector keeps, and no collector is registered.</p>' : errorBox(error);
    }
  });
});

/** Hops (access-log lines) as bars from their start to their end, service lines as marks, in time order. */
function renderTrace(traceID, lines) {
  const target = document.getElementById('trace');
  if (!lines.length) { target.innerHTML = '<p class="muted">No log line carries trace ' + esc(traceID) + ' yet (looking again every 3 s).</p>'; return; }
  const rows = lines.map(l => {
    const f = l.fields || {};
    const end = f.ts ? Date.parse(f.ts) : l.ns / 1e6;
    const access = f.msg === 'access';
    const duration = access ? Number(f.duration_ms || 0) : 0;
    return { l, f, access, start: end - duration, end, duration };
  }).sort((a, b) => a.start - b.start || b.duration - a.duration);
  const t0 = Math.min(...rows.map(r => r.start)), t1 = Math.max(...rows.map(r => r.end));
  const span = Math.max(t1 - t0, 1);
  const services = [...new Set(rows.map(r => r.l.labels.service))];
  target.innerHTML = '<p>' + rows.filter(r => r.access).length + ' hops and ' + rows.filter(r => !r.access).length + ' service lines across ' +
    services.map(s => '<a href="#/services/' + enc(s) + '">' + esc(s) + '</a>').join(', ') + ' · ' + span.toFixed(1) + ' ms from first to last.</p>' +
    '<div class="scroll"><table id="hops"><thead><tr><th>Service</th><th>Hop</th><th class="num">Status</th><th class="num">ms</th><th>Span / parent</th>' +
    '<th class="wide">Time</th></tr></thead><tbody>' + rows.map(r => {
      const left = ((r.start - t0) / span * 100).toFixed(2), width = Math.max(r.duration / span * 100, 0.3).toFixed(2);
      const bar = r.access ? '<span class="' + (r.f.status >= 500 ? 'err' : '') + '" data-left="' + left + '" data-width="' + width + '"></span>'
        : '<i data-left="' + left + '"></i>';
      const hop = esc(r.access ? (r.f.direction === 'inbound' ? 'in: ' : 'out to ' + r.f.upstream + ': ') + r.f.method + ' ' + r.f.path : summarize(r.l));
      return '<tr data-service="' + esc(r.l.labels.service) + '" data-kind="' + (r.access ? 'hop' : 'line') + '"><td>' + esc(r.l.labels.service) + '<div class="small muted">' +
        esc(r.l.labels.instance || '') + '</div></td><td>' + hop + '</td><td class="num">' + (r.access ? esc(r.f.status) : '') + '</td><td class="num">' +
        (r.access ? r.duration.toFixed(1) : '') + '</td><td><code class="small">' + esc(r.f.span_id || '') + (r.f.parent_span_id ? ' ← ' + esc(r.f.parent_span_id) : '') +
        '</code></td><td><div class="wf" aria-hidden="true">' + bar + '</div></td></tr>';
    }).join('') + '</tbody></table></div>';
  // Positions are set through the style object: the page's content security policy refuses inline styles.
  target.querySelectorAll('.wf [data-left]').forEach(mark => {
    mark.style.left = mark.dataset.left + '%';
    if (mark.dataset.width) mark.style.width = mark.dataset.width + '%';
  });
}
"""#
}
