extension UIScript {
    /// The KV store: browse by prefix, view as text or hex, create, edit and delete with CAS.
    static let kv = #"""
function kvPath(key) { return '/v1/kv/' + key.split('/').map(enc).join('/'); }
function kvLink(key) { return '#/kv/' + key.split('/').map(enc).join('/'); }

function crumbs(key) {
  const parts = key.split('/');
  let html = '<p class="crumbs"><a href="#/kv/">Key/Value</a> /', sofar = '';
  parts.slice(0, -1).forEach(part => { sofar += part + '/'; html += ' <a href="' + kvLink(sofar) + '">' + esc(part) + '</a> /'; });
  return html + '</p>';
}

/** A value's bytes as text when they are UTF-8 without control characters, else null. */
function asText(bytes) {
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/.test(text) ? null : text;
  } catch (_) { return null; }
}
function toHex(bytes) { return Array.from(bytes, b => b.toString(16).padStart(2, '0')).join(' ').replace(/((?:\S\S ){16})/g, '$1\n').trim(); }
function fromHex(text) {
  const digits = text.replace(/\s+/g, '');
  if (!/^([0-9a-fA-F]{2})*$/.test(digits)) throw new Error('hex digits come in pairs (0-9, a-f)');
  return new Uint8Array(digits.match(/../g) ? digits.match(/../g).map(h => parseInt(h, 16)) : []);
}
function decodeValue(base64) { return base64 == null ? new Uint8Array() : Uint8Array.from(atob(base64), c => c.charCodeAt(0)); }

route(/^#\/kv\/(.*)$/, 'kv', async (signal, key) => {
  if (key === '' || key.endsWith('/')) return kvFolder(signal, key);
  return kvEntry(signal, key);
});

async function kvFolder(signal, prefix) {
  main.innerHTML = crumbs(prefix + 'x') + '<h1>' + esc(prefix || 'Key/Value') + '</h1><div id="keys">Loading…</div>' +
    '<h2>Create a key</h2><form class="stack" id="create"><label>Key (under ' + esc(prefix || 'the root') + ')<input type="text" id="newKey" required ' +
    'placeholder="name or folder/name"></label><label>Value<textarea id="newValue"></textarea></label><div><button class="primary" type="submit">Create</button></div></form><div id="createResult"></div>';
  try {
    let keys = [];
    try { keys = (await api(kvPath(prefix) + '?keys&separator=/', { signal })).json(); } catch (error) { if (error.status !== 404) throw error; }
    const own = keys.filter(k => k !== prefix);
    document.getElementById('keys').innerHTML = own.length === 0 ? '<p class="muted">No keys under ' + esc(prefix || 'the root') + '.</p>' :
      '<table id="kvlist"><thead><tr><th>Key</th></tr></thead><tbody>' + own.map(k => '<tr><td><a href="' + kvLink(k) + '">' +
        esc(k.slice(prefix.length)) + '</a>' + (k.endsWith('/') ? ' <span class="muted small">folder</span>' : '') + '</td></tr>').join('') + '</tbody></table>';
  } catch (error) {
    if (error.name === 'AbortError') return;
    document.getElementById('keys').innerHTML = errorBox(error);
  }
  document.getElementById('create').onsubmit = async event => {
    event.preventDefault();
    const key = prefix + document.getElementById('newKey').value.trim();
    try {
      // cas=0 creates only: a key someone else made meanwhile is not overwritten.
      const created = (await api(kvPath(key) + '?cas=0', { method: 'PUT', body: document.getElementById('newValue').value })).text.trim();
      if (created !== 'true') throw new ApiError(409, 'a key named ' + key + ' already exists');
      location.hash = kvLink(key);
    } catch (error) { document.getElementById('createResult').innerHTML = errorBox(error); }
  };
}

async function kvEntry(signal, key) {
  main.innerHTML = crumbs(key) + '<h1>' + esc(key.split('/').pop()) + '</h1><div id="entry">Loading…</div>';
  let entry;
  try {
    entry = (await api(kvPath(key), { signal })).json()[0];
  } catch (error) {
    if (error.name === 'AbortError') return;
    document.getElementById('entry').innerHTML = error.status === 404 ? '<p>There is no key ' + esc(key) + '. <a href="' + kvLink(key.slice(0, key.lastIndexOf('/') + 1)) +
      '">Create it in its folder</a>.</p>' : errorBox(error);
    return;
  }
  let bytes = decodeValue(entry.Value);
  const text = asText(bytes);
  const mode = text == null ? 'hex' : 'text';
  document.getElementById('entry').innerHTML = '<p class="small muted">Modify index <span id="modifyIndex">' + entry.ModifyIndex + '</span> · ' + bytes.length +
    ' bytes · flags ' + esc(entry.Flags) + (entry.Session ? ' · locked by session ' + esc(entry.Session) : '') + ' · shown as ' + mode +
    (mode === 'hex' ? ' (the value is binary)' : '') + '</p>' +
    '<form class="stack" id="edit"><label>Value (' + mode + ')<textarea id="value" spellcheck="false"></textarea></label>' +
    '<div class="row"><button class="primary" type="submit">Save</button><button class="danger" type="button" id="delete">Delete</button></div></form><div id="result"></div>';
  const editor = document.getElementById('value');
  editor.value = mode === 'hex' ? toHex(bytes) : text;
  let index = entry.ModifyIndex;
  const result = document.getElementById('result');
  const encodeEditor = () => (mode === 'hex' ? fromHex(editor.value) : editor.value);

  /** The key changed since it was read: show what it is now, keep the edit, overwrite nothing. */
  const conflict = async verb => {
    let current = null;
    try { current = (await api(kvPath(key))).json()[0]; } catch (error) { if (error.status !== 404) throw error; }
    if (!current) {
      result.innerHTML = '<div class="error" role="alert">Not ' + verb + ': someone deleted this key since you opened it. Your text is still in the editor.</div>';
      return;
    }
    const theirs = decodeValue(current.Value);
    result.innerHTML = '<div class="error" role="alert" id="conflict"><strong>Not ' + verb + ': this key changed since you opened it</strong> (modify index ' + index +
      ' → ' + current.ModifyIndex + '). Nothing was overwritten; your text is still in the editor. Its value now:<pre>' +
      esc(asText(theirs) ?? toHex(theirs)) + '</pre><div class="row"><button type="button" id="takeTheirs">Load this value</button>' +
      '<button type="button" class="danger" id="keepMine">' + (verb === 'saved' ? 'Save mine over it' : 'Delete it anyway') + '</button></div></div>';
    document.getElementById('takeTheirs').onclick = () => { location.reload(); };
    document.getElementById('keepMine').onclick = () => {
      index = current.ModifyIndex;
      document.getElementById('modifyIndex').textContent = index;
      (verb === 'saved' ? save : remove)();
    };
  };

  const save = async () => {
    let body;
    try { body = encodeEditor(); } catch (error) { result.innerHTML = '<div class="error">Not saved: ' + esc(error.message) + '</div>'; return; }
    try {
      const done = (await api(kvPath(key) + '?cas=' + index, { method: 'PUT', body })).text.trim() === 'true';
      if (!done) return conflict('saved');
      const saved = (await api(kvPath(key))).json()[0];
      index = saved.ModifyIndex;
      document.getElementById('modifyIndex').textContent = index;
      result.innerHTML = '<div class="ok" role="status">Saved (modify index ' + index + ').</div>';
    } catch (error) { result.innerHTML = errorBox(error); }
  };
  const remove = async () => {
    try {
      const done = (await api(kvPath(key) + '?cas=' + index, { method: 'DELETE' })).text.trim() === 'true';
      if (!done) return conflict('deleted');
      location.hash = kvLink(key.slice(0, key.lastIndexOf('/') + 1));
    } catch (error) { result.innerHTML = errorBox(error); }
  };
  document.getElementById('edit').onsubmit = event => { event.preventDefault(); save(); };
  document.getElementById('delete').onclick = () => { if (confirm('Delete ' + key + '?')) remove(); };
}
"""#
}
