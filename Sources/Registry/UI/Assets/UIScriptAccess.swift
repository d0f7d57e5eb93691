extension UIScript {
    /// Who may call whom (intentions) and who may do what (ACL tokens and policies).
    static let access = #"""
route(/^#\/intentions$/, 'intentions', async signal => {
  main.innerHTML = '<h1>Intentions</h1><p class="muted">Which service may call which; sidecars apply changes within a second.</p><div id="list">Loading…</div>' +
    '<h2>Create or replace</h2><form class="stack" id="create"><div class="row"><label>Source<input type="text" id="source" required placeholder="web or *"></label>' +
    '<label>Destination<input type="text" id="destination" required placeholder="orders or *"></label><label>Action<select id="action">' +
    '<option value="allow">allow</option><option value="deny">deny</option></select></label></div><label>Description<input type="text" id="description"></label>' +
    '<div><button class="primary" type="submit">Save intention</button></div></form><div id="result"></div>';
  const result = document.getElementById('result');
  document.getElementById('create').onsubmit = async event => {
    event.preventDefault();
    const source = document.getElementById('source').value.trim(), destination = document.getElementById('destination').value.trim();
    const body = JSON.stringify({ Action: document.getElementById('action').value, Description: document.getElementById('description').value });
    try {
      await api('/v1/connect/intentions/exact?source=' + enc(source) + '&destination=' + enc(destination), { method: 'PUT', body });
      result.innerHTML = '<div class="ok" role="status">Saved ' + esc(source) + ' → ' + esc(destination) + '.</div>';
    } catch (error) { result.innerHTML = errorBox(error); }
  };
  await watch('/v1/connect/intentions', signal, answer => {
    const list = answer.json();
    document.getElementById('list').innerHTML = list.length === 0 ? '<p class="muted">No intentions: the default applies to every call.</p>' :
      '<div class="scroll"><table id="intentionList"><thead><tr><th>Source</th><th>Destination</th><th>Action</th><th class="num">Precedence</th><th>Description</th><th></th></tr></thead><tbody>' +
      list.map(i => '<tr data-source="' + esc(i.SourceName) + '" data-destination="' + esc(i.DestinationName) + '"><td>' + esc(i.SourceName) + '</td><td>' +
        esc(i.DestinationName) + '</td><td><span class="st ' + (i.Action === 'allow' ? 'passing' : 'critical') + '">' + esc(i.Action) + '</span></td><td class="num">' +
        esc(i.Precedence) + '</td><td>' + esc(i.Description) + '</td><td><button type="button" class="danger" data-delete>Delete</button></td></tr>').join('') + '</tbody></table></div>';
    document.querySelectorAll('#intentionList [data-delete]').forEach(button => {
      button.onclick = async () => {
        const row = button.closest('tr');
        try {
          await api('/v1/connect/intentions/exact?source=' + enc(row.dataset.source) + '&destination=' + enc(row.dataset.destination), { method: 'DELETE' });
          result.innerHTML = '<div class="ok" role="status">Deleted ' + esc(row.dataset.source) + ' → ' + esc(row.dataset.destination) + '.</div>';
        } catch (error) { result.innerHTML = errorBox(error); }
      };
    });
  }, error => { document.getElementById('list').innerHTML = errorBox(error); });
});

route(/^#\/acl$/, 'acl', async signal => {
  if (app.acl === 'off') {
    main.innerHTML = '<h1>Access</h1><p class="notice">ACLs are off on this registry: every request may do everything. Start the registry with ' +
      '<code>--acl-enabled --acl-default-policy deny</code> (as trellis up does) to require tokens.</p>';
    return;
  }
  main.innerHTML = '<h1>Access</h1><h2>Tokens</h2><div id="tokens">Loading…</div><h2>Policies</h2><div id="policies">Loading…</div>' +
    '<div class="grid2"><section><h2>Create a policy</h2><form class="stack" id="newPolicy"><label>Name<input type="text" id="policyName" required></label>' +
    '<label>Rules (HCL or JSON)<textarea id="policyRules" spellcheck="false" placeholder=\'service_prefix "" { policy = "read" }\'></textarea></label>' +
    '<div><button class="primary" type="submit">Create policy</button></div></form></section>' +
    '<section><h2>Create a token</h2><form class="stack" id="newToken"><label>Description<input type="text" id="tokenDescription"></label>' +
    '<label>Policies (names, comma-separated)<input type="text" id="tokenPolicies"></label><label>Service identity (optional)<input type="text" id="tokenService"></label>' +
    '<div><button class="primary" type="submit">Create token</button></div></form></section></div><div id="result"></div>';
  const result = document.getElementById('result');
  const load = async () => {
    try {
      const tokens = (await api('/v1/acl/tokens', { signal })).json();
      if (signal.aborted) return;
      document.getElementById('tokens').innerHTML = '<div class="scroll"><table id="tokenList"><thead><tr><th>Accessor</th><th>Description</th><th>Policies</th>' +
        '<th>Service identities</th><th></th></tr></thead><tbody>' + tokens.map(t => '<tr data-id="' + esc(t.AccessorID) + '"><td><code>' + esc(t.AccessorID) +
        '</code></td><td>' + esc(t.Description) + '</td><td>' + (t.Policies || []).map(p => '<span class="tag">' + esc(p.Name) + '</span>').join('') +
        '</td><td>' + (t.ServiceIdentities || []).map(s => '<span class="tag">' + esc(s.ServiceName) + '</span>').join('') + '</td><td>' +
        (t.AccessorID === '00000000-0000-0000-0000-000000000002' ? '' : '<button type="button" class="danger" data-delete>Delete</button>') + '</td></tr>').join('') + '</tbody></table></div>';
      const policies = (await api('/v1/acl/policies', { signal })).json();
      document.getElementById('policies').innerHTML = '<div class="scroll"><table id="policyList"><thead><tr><th>Name</th><th>Description</th><th>ID</th><th></th></tr></thead><tbody>' +
        policies.map(p => '<tr data-id="' + esc(p.ID) + '"><td>' + esc(p.Name) + '</td><td>' + esc(p.Description) + '</td><td><code class="small">' + esc(p.ID) +
          '</code></td><td>' + (p.ID.startsWith('00000000-0000-0000-0000-0000000000') ? '' : '<button type="button" class="danger" data-delete>Delete</button>') + '</td></tr>').join('') +
        '</tbody></table></div>';
      for (const [table, path] of [['tokenList', '/v1/acl/token/'], ['policyList', '/v1/acl/policy/']]) {
        document.querySelectorAll('#' + table + ' [data-delete]').forEach(button => {
          button.onclick = async () => {
            const id = button.closest('tr').dataset.id;
            try { await api(path + enc(id), { method: 'DELETE' }); result.innerHTML = '<div class="ok" role="status">Deleted ' + esc(id) + '.</div>'; load(); } catch (error) { result.innerHTML = errorBox(error); }
          };
        });
      }
    } catch (error) {
      if (error.name === 'AbortError') return;
      document.getElementById('tokens').innerHTML = errorBox(error);
      document.getElementById('policies').innerHTML = '';
    }
  };
  document.getElementById('newPolicy').onsubmit = async event => {
    event.preventDefault();
    const body = JSON.stringify({ Name: document.getElementById('policyName').value.trim(), Rules: document.getElementById('policyRules').value });
    try { await api('/v1/acl/policy', { method: 'PUT', body }); result.innerHTML = '<div class="ok" role="status">Policy created.</div>'; load(); } catch (error) { result.innerHTML = errorBox(error); }
  };
  document.getElementById('newToken').onsubmit = async event => {
    event.preventDefault();
    const policies = document.getElementById('tokenPolicies').value.split(',').map(s => s.trim()).filter(Boolean).map(Name => ({ Name }));
    const service = document.getElementById('tokenService').value.trim();
    const body = JSON.stringify({ Description: document.getElementById('tokenDescription').value, Policies: policies,
      ServiceIdentities: service ? [{ ServiceName: service }] : [] });
    try {
      const created = (await api('/v1/acl/token', { method: 'PUT', body })).json();
      result.innerHTML = '<div class="ok" role="status">Token created. Its SecretID: <code>' + esc(created.SecretID) + '</code></div>';
      load();
    } catch (error) { result.innerHTML = errorBox(error); }
  };
  await load();
});
"""#
}
