// lume web console: one WebSocket (protocol in runtime/console.c), charts
// drawn on <canvas> by hand. No framework, nothing fetched from elsewhere.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const WINDOW_MS = 60000;        // what a chart shows
  const params = new URLSearchParams(location.search);
  const token = params.get('token');
  let ws = null, backoff = 500, sensors = [], charts = [], evalId = 0, replMore = false;
  const history = [];
  let histPos = 0;

  // ---- charts -------------------------------------------------------------
  function makeChart(s, i) {
    const box = document.createElement('div');
    box.className = 'chart';
    box.dataset.sensor = s.name;
    box.dataset.points = '0';
    box.innerHTML = '<div class="head"><span class="name"></span><span class="val"></span>' +
      '<span class="rate"></span></div><canvas></canvas>';
    box.querySelector('.name').textContent = s.name + (s.unit ? ' (' + s.unit + ')' : '');
    $('charts').appendChild(box);
    return { s, i, box, canvas: box.querySelector('canvas'), pts: [], rate: null, dirty: true };
  }

  function draw(c) {
    const cv = c.canvas, dpr = window.devicePixelRatio || 1;
    const w = cv.clientWidth, h = cv.clientHeight;
    if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
      cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr);
    }
    const g = cv.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const now = Date.now(), t0 = now - WINDOW_MS;
    while (c.pts.length && c.pts[0][0] < t0) c.pts.shift();
    if (!c.pts.length) return;
    let lo = Infinity, hi = -Infinity;
    for (const p of c.pts) { if (p[1] < lo) lo = p[1]; if (p[2] > hi) hi = p[2]; }
    if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
    const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
    const L = 44, x = (t) => L + (t - t0) / WINDOW_MS * (w - L - 2);
    const y = (v) => 4 + (hi - v) / (hi - lo) * (h - 8);
    g.font = '10px ui-monospace, monospace'; g.fillStyle = '#6b7684'; g.strokeStyle = '#e6e9ed';
    for (let k = 0; k <= 2; k++) {
      const v = lo + (hi - lo) * k / 2, yy = y(v);
      g.beginPath(); g.moveTo(L, yy); g.lineTo(w, yy); g.stroke();
      g.fillText(fmt(v), 2, yy + 3);
    }
    g.fillStyle = 'rgba(23,105,170,0.18)';           // min..max band
    for (const p of c.pts) {
      const yy = y(p[2]);
      g.fillRect(x(p[0]) - 1, yy, 2, Math.max(1, y(p[1]) - yy));
    }
    g.strokeStyle = '#1769aa'; g.lineWidth = 1.5; g.beginPath();   // last values
    c.pts.forEach((p, k) => (k ? g.lineTo(x(p[0]), y(p[3])) : g.moveTo(x(p[0]), y(p[3]))));
    g.stroke();
  }

  function fmt(v) {
    if (v === null || v === undefined) return '–';
    const a = Math.abs(v);
    return a >= 1e5 || (a < 1e-3 && a > 0) ? v.toExponential(2) : (+v.toFixed(3)).toString();
  }

  function frame() {
    for (const c of charts) if (c.dirty) { draw(c); c.dirty = false; }
    requestAnimationFrame(frame);
  }
  setInterval(() => charts.forEach((c) => (c.dirty = true)), 1000);  // scroll when idle

  // ---- tables ---------------------------------------------------------------
  function table(el, head, rows) {
    const esc = (s) => String(s).replace(/[&<>"]/g, (m) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[m]));
    el.innerHTML = '<tr>' + head.map((h) => '<th>' + esc(h) + '</th>').join('') + '</tr>' +
      rows.map((r) => '<tr>' + r.map((v) => {
        const cls = v && v.cls ? ' class="' + v.cls + '"' : '';
        return '<td' + cls + '>' + esc(v && v.text !== undefined ? v.text : v) + '</td>';
      }).join('') + '</tr>').join('');
  }

  function onStats(m) {
    const st = m.stats || {};
    for (const c of charts) {
      const s = st.sensors && st.sensors[c.s.name];
      if (!s) continue;
      c.box.querySelector('.rate').textContent = fmt(s.rate) + ' Hz' +
        (s.read_errors ? ' · ' + s.read_errors + ' errors' : '') +
        (s.late_p99_us !== undefined ? ' · lateness p99 ' + fmt(s.late_p99_us / 1000) + ' ms' : '') +
        (s.overruns ? ' · ' + s.overruns + ' overruns' : '');
    }
    const net = st.net;
    const rows = [];
    if (net) {
      const cls = net.state === 'CONNECTED' ? 'ok' : 'warn';
      $('conn').textContent = net.state.toLowerCase(); $('conn').className = 'badge ' + cls;
      rows.push(['state', { text: net.state, cls }]);
      for (const k of ['sent', 'acked', 'resent', 'received', 'connects', 'reconnects', 'inflight', 'bytes_out', 'bytes_in', 'protocol_errors'])
        rows.push([k, net[k]]);
      if (net.last_error) rows.push(['last error', { text: net.last_error, cls: 'bad' }]);
    } else {
      $('conn').textContent = 'offline (no net.url)'; $('conn').className = 'badge';
      rows.push(['state', 'offline: no net.url']);
    }
    if (st.loop) rows.push(['loop max stall ms', fmt(st.loop.max_stall_ms)]);
    if (st.process) rows.push(['rss kB', st.process.rss_kb], ['uptime s', fmt(st.process.uptime_s)]);
    if (st.console) rows.push(['console clients', st.console.clients], ['frames dropped', st.console.frames_dropped]);
    table($('net'), ['', ''], rows);
    const ob = st.outbox || {};
    const lanes = Object.keys(ob).filter((k) => ob[k] && typeof ob[k] === 'object');
    table($('outbox'), ['lane', 'depth', 'bytes', 'dropped'],
      lanes.map((l) => [l, ob[l].depth, ob[l].bytes, { text: ob[l].dropped, cls: ob[l].dropped ? 'warn' : '' }])
        .concat([['pending', ob.pending, '', '']]));
    const sc = st.scripts || {};
    table($('scripts'), ['script', 'version', 'status', 'errors', 'calls', 'memory', 'last error'],
      Object.keys(sc).sort().map((n) => {
        const s = sc[n];
        return [n, s.version, { text: s.status, cls: s.status === 'running' ? 'ok' : 'bad' },
          { text: s.errors, cls: s.errors ? 'bad' : '' }, s.calls, s.mem, { text: s.last_error || '', cls: 'bad' }];
      }));
    const tw = m.twin || {};
    $('desired').textContent = JSON.stringify(tw.desired || {}, null, 2);
    $('reported').textContent = JSON.stringify(tw.reported || {}, null, 2);
    const drift = Object.keys(tw.desired || {}).filter((k) =>
      JSON.stringify((tw.desired || {})[k]) !== JSON.stringify((tw.reported || {})[k]));
    $('drift').textContent = drift.length ? 'drift: ' + drift.join(', ') : 'in sync';
    $('drift').className = 'badge ' + (drift.length ? 'warn' : 'ok');
  }

  // ---- log and REPL ------------------------------------------------------------
  // lines of the runtime's log: "HH:MM:SS.mmm level component: message\n"...
  function addLog(text) {
    const el = $('log'), atEnd = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
    for (const line of (text || '').split('\n')) {
      if (!line) continue;
      const d = document.createElement('div');
      const lvl = line.split(' ')[1];
      d.className = 'lvl-' + lvl;
      d.textContent = line;
      el.appendChild(d);
    }
    while (el.childNodes.length > 500) el.removeChild(el.firstChild);
    if (atEnd) el.scrollTop = el.scrollHeight;
  }

  function replPrint(text, cls) {
    const el = $('repl-out'), d = document.createElement('div');
    if (cls) d.className = cls;
    d.textContent = text;
    el.appendChild(d);
    el.scrollTop = el.scrollHeight;
  }

  $('repl-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const inp = $('repl-in'), code = inp.value;
    if (!ws || ws.readyState !== 1) { replPrint('not connected', 'bad'); return; }
    replPrint((replMore ? '>> ' : '> ') + code);
    if (code.trim()) { history.push(code); }
    histPos = history.length;
    ws.send(JSON.stringify({ type: 'eval', id: ++evalId, code }));
    inp.value = '';
  });
  $('repl-in').addEventListener('keydown', (e) => {
    if (e.key === 'ArrowUp' && histPos > 0) { e.target.value = history[--histPos]; e.preventDefault(); }
    else if (e.key === 'ArrowDown' && histPos < history.length) { e.target.value = history[++histPos] || ''; e.preventDefault(); }
    else if (e.key === 'c' && e.ctrlKey && ws) {
      ws.send(JSON.stringify({ type: 'interrupt' }));
      if (replMore) replPrint('(chunk dropped)', 'warn');
    } else if (e.key === 'Tab' && ws && ws.readyState === 1) {
      e.preventDefault();
      ws.send(JSON.stringify({ type: 'complete', id: ++evalId, text: e.target.value }));
    }
  });

  // ---- the socket ---------------------------------------------------------------
  function onMessage(ev) {
    let m;
    try { m = JSON.parse(ev.data); } catch (e) { return; }
    switch (m.type) {
      case 'hello':
        $('device').textContent = m.device + ' · board ' + m.board + ' · lume ' + m.version;
        if (JSON.stringify(sensors) !== JSON.stringify(m.sensors)) {
          sensors = m.sensors; $('charts').innerHTML = '';
          charts = sensors.map(makeChart);
        }
        $('log').innerHTML = ''; addLog(m.log);
        if (!m.repl) $('repl-in').placeholder = 'this lume has no REPL evaluator';
        break;
      case 'points':
        for (const k in m.d) {
          const c = charts[+k], v = m.d[k];
          if (!c) continue;
          c.pts.push([m.t, v[0], v[1], v[2]]);
          c.box.dataset.points = String(+c.box.dataset.points + 1);
          c.box.querySelector('.val').textContent = fmt(v[2]);
          c.dirty = true;
        }
        break;
      case 'stats': onStats(m); break;
      case 'log': addLog(m.text); break;
      case 'eval':
        replMore = m.status === 'more';
        $('prompt').textContent = replMore ? '>>' : '>';
        if (m.output) replPrint(m.output, m.status === 'error' ? 'bad' : '');
        break;
      case 'complete': {
        const inp = $('repl-in'), c = m.candidates || [];
        const word = inp.value.match(/[A-Za-z_][\w.:]*$/);
        const head = word ? inp.value.slice(0, word.index) : inp.value;
        if (c.length === 1) inp.value = head + c[0];
        else if (c.length > 1) {
          let p = c[0];                       // the common prefix
          for (const x of c) while (!x.startsWith(p)) p = p.slice(0, -1);
          inp.value = head + p;
          replPrint(c.join('  '), 'mute');
        }
        break;
      }
      case 'error': replPrint('console: ' + m.error, 'bad'); break;
    }
  }

  function connect() {
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws' +
      (token ? '?token=' + encodeURIComponent(token) : '');
    ws = new WebSocket(url, 'lume-console');
    ws.onopen = () => { backoff = 500; };
    ws.onmessage = onMessage;
    ws.onclose = (e) => {
      $('conn').textContent = 'console disconnected' + (e.reason ? ': ' + e.reason : '');
      $('conn').className = 'badge bad';
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }
  connect();
  requestAnimationFrame(frame);
})();
