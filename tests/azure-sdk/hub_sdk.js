'use strict';
// tests/azure-sdk/hub_sdk.js — Microsoft's Azure IoT device SDK for Node.js
// (azure-iot-device + azure-iot-device-mqtt, as a customer uses them) against
// lume's IoT Hub emulator (tests/integration/azure_hub.py), to check that the
// emulator speaks the hub's protocol and not only lume's idea of it.
//
// Run by tests/integration/test_azure_sdk.sh, which starts the emulator (with
// a TLS listener: the SDK speaks only mqtts) and reads what this prints: one
// line per check, "PASS what" or "FAIL what: why", and "# notes". Exits 0
// when every check passed.
//
// Environment:
//   SDK_HOST     the hub's host name (testhub.azure-devices.net)
//   SDK_GATEWAY  localhost:PORT of the emulator's TLS listener; the SDK goes
//                there through the connection string's GatewayHostName (as to
//                an IoT Edge gateway), so user name and token still name
//                SDK_HOST
//   SDK_KEY      the device key (base64);  SDK_BADKEY another one
//   SDK_CA       the test CA (PEM) that signed the emulator's certificate
//   SDK_CTL      the emulator's control port (one JSON command per connection)
//   SDK_EVENTS   the emulator's event log (stdout: one JSON line per event)
//   SDK_DEVICE   the device id (a second and third id get suffixes -2, -3)

const fs = require('fs');
const net = require('net');
const { Client, Message, SharedAccessKeyAuthenticationProvider,
        SharedAccessSignature } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const env = (k) => {
  if (!process.env[k]) throw new Error('hub_sdk.js: ' + k + ' is not set');
  return process.env[k];
};
const HOST = env('SDK_HOST'), GATEWAY = env('SDK_GATEWAY'), KEY = env('SDK_KEY');
const BADKEY = env('SDK_BADKEY'), CA = fs.readFileSync(env('SDK_CA'), 'utf8');
const CTL = Number(env('SDK_CTL')), EVENTS = env('SDK_EVENTS'), DEV = env('SDK_DEVICE');
const MODEL = 'dtmi:com:example:Thermostat;1';

let failed = 0;
function check(what, cond, why) {
  if (cond) {
    console.log('PASS ' + what);
  } else {
    failed++;
    console.log('FAIL ' + what + ': ' + (why === undefined ? 'no' : why));
  }
}
const note = (s) => console.log('# ' + s);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// one command to the emulator's control port, its JSON answer
function ctl(cmd) {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(CTL, '127.0.0.1');
    let buf = '';
    s.on('connect', () => s.write(JSON.stringify(cmd) + '\n'));
    s.on('data', (d) => { buf += d; });
    s.on('end', () => {
      try { resolve(JSON.parse(buf)); } catch (e) { reject(new Error('control answered ' + buf)); }
    });
    s.on('error', reject);
  });
}

// the emulator's events so far, those for which pick(e) is true
function events(pick) {
  return fs.readFileSync(EVENTS, 'utf8').split('\n').filter(Boolean)
    .map((l) => JSON.parse(l)).filter(pick);
}

// resolves with the first value fn() returns that is truthy, polling every
// 100 ms; with undefined after ms
async function waitFor(ms, fn) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v || Date.now() >= end) return v || undefined;
    await sleep(100);
  }
}

// an event the SDK emits, or undefined after ms
function once(emitter, name, ms, pick = () => true) {
  return new Promise((resolve) => {
    const t = setTimeout(() => { emitter.removeListener(name, on); resolve(undefined); }, ms);
    function on(...a) {
      if (!pick(...a)) return;
      clearTimeout(t);
      emitter.removeListener(name, on);
      resolve(a.length > 1 ? a : a[0]);
    }
    emitter.on(name, on);
  });
}

const cs = (id, key = KEY) =>
  `HostName=${HOST};DeviceId=${id};SharedAccessKey=${key};GatewayHostName=${GATEWAY}`;

async function mainDevice() {
  const client = Client.fromConnectionString(cs(DEV), Mqtt);
  client.on('error', (e) => note('client error: ' + e));
  await client.setOptions({ ca: CA, modelId: MODEL });
  try {
    await client.open();
    check('the SDK connects over TLS with a SAS token from its connection string', true);
  } catch (e) {
    check('the SDK connects over TLS with a SAS token from its connection string', false, e.name + ': ' + e.message);
    return;
  }
  const conn = events((e) => e.ev === 'connect' && e.client === DEV).pop() || {};
  const user = conn.user || {};
  check('the emulator saw the SDK\'s user name: api-version 2021-04-12', user['api-version'] === '2021-04-12', JSON.stringify(user));
  check('... its DeviceClientType (accepted, as the hub does)', /^azure-iot-device\//.test(user.DeviceClientType || ''), JSON.stringify(user));
  check('... and the model id', user['model-id'] === MODEL, JSON.stringify(user));
  check('... on the TLS listener', conn.tls === true, JSON.stringify(conn));

  // ---- twin: GET -------------------------------------------------------------
  const twin = await client.getTwin();
  const hub = await ctl({ cmd: 'twin' });
  check('getTwin(): desired as the hub holds it', twin.properties.desired.greeting === 'hi' &&
        twin.properties.desired.$version === hub.desired.$version,
        JSON.stringify(twin.properties.desired) + ' vs ' + JSON.stringify(hub.desired));
  check('getTwin(): reported with its $version', twin.properties.reported.$version === hub.reported.$version,
        JSON.stringify(twin.properties.reported));

  // ---- twin: reported PATCH ----------------------------------------------------
  const before = hub.reported.$version;
  const err = await new Promise((r) => twin.properties.reported.update({ sdk: { fw: '1.2', ok: true } }, r));
  check('reported.update(): answered 204 (no error)', !err, err && err.message);
  const after = await ctl({ cmd: 'twin' });
  check('the emulator\'s twin holds the SDK\'s reported patch', after.reported.sdk &&
        after.reported.sdk.fw === '1.2' && after.reported.sdk.ok === true, JSON.stringify(after.reported));
  check('... with its $version bumped by one', after.reported.$version === before + 1,
        before + ' -> ' + after.reported.$version);

  // ---- twin: desired patch -----------------------------------------------------
  const got = once(twin, 'properties.desired', 10000, (d) => d.sdk && d.sdk.rate === 7);
  await sleep(200);            // the SDK subscribes to desired patches after getTwin
  const { version } = await ctl({ cmd: 'patch', patch: { sdk: { rate: 7 } } });
  const delta = await got;
  check('a desired patch arrives as the SDK\'s properties.desired event', delta !== undefined);
  check('... with the hub\'s $version', delta && delta.$version === version,
        delta && (delta.$version + ' vs ' + version));
  check('... merged into the SDK\'s twin', twin.properties.desired.sdk && twin.properties.desired.sdk.rate === 7 &&
        twin.properties.desired.greeting === 'hi', JSON.stringify(twin.properties.desired));

  // ---- direct method -------------------------------------------------------------
  client.onDeviceMethod('double', (req, res) => {
    res.send(200, { twice: req.payload.x * 2, rid: req.requestId }, (e) => e && note('method answer: ' + e));
  });
  client.onDeviceMethod('refuse', (req, res) => res.send(409, { message: 'valve busy' }, () => {}));
  await sleep(300);
  let r = await ctl({ cmd: 'method', name: 'double', payload: { x: 21 }, timeout: 10 });
  let p = {};
  try { p = JSON.parse(r.payload); } catch (e) { /* checked below */ }
  check('onDeviceMethod: the emulator sees status 200', r.status === 200, JSON.stringify(r));
  check('... and the handler\'s JSON payload', p.twice === 42, r.payload);
  check('... answered to the request id the emulator sent', /^\d+$/.test(String(p.rid)), r.payload);
  r = await ctl({ cmd: 'method', name: 'refuse', payload: null, timeout: 10 });
  check('onDeviceMethod: a status the handler chose (409) reaches the emulator',
        r.status === 409 && /valve busy/.test(r.payload), JSON.stringify(r));

  // ---- cloud-to-device -----------------------------------------------------------
  const c2d = once(client, 'message', 10000);
  await sleep(200);
  const sent = await ctl({ cmd: 'c2d', device: DEV, payload: 'open valve 3',
                           props: { kind: 'cmd x', 'a/b': 'c&d=e', 'n%': '100%' } });
  const msg = await c2d;
  check('a C2D message arrives as client.on(\'message\')', msg !== undefined);
  if (msg) {
    client.complete(msg, () => {});
    check('... with its payload', msg.data.toString() === 'open valve 3', msg.data.toString());
    check('... its properties, URL-decoded (space, /, &, =, %)', msg.properties.getValue('kind') === 'cmd x' &&
          msg.properties.getValue('a/b') === 'c&d=e' && msg.properties.getValue('n%') === '100%',
          JSON.stringify(msg.properties.propertyList));
    check('... and the hub\'s system properties ($.to, $.mid)', msg.to === `/devices/${DEV}/messages/deviceBound` &&
          msg.messageId === sent.mid, msg.to + ' ' + msg.messageId);
  }

  // ---- device-to-cloud -----------------------------------------------------------
  const m = new Message(JSON.stringify({ t: 21.5 }));
  m.messageId = 'sdk-1';
  m.contentType = 'application/json';
  m.contentEncoding = 'utf-8';
  m.properties.add('site', 'plant a');
  m.properties.add('a&b', 'c=d/e+f');
  try {
    await client.sendEvent(m);
    check('sendEvent(): acknowledged', true);
  } catch (e) {
    check('sendEvent(): acknowledged', false, e.message);
  }
  const tel = await waitFor(5000, () => events((e) => e.ev === 'telemetry' && e.device === DEV).pop());
  const props = (tel && tel.props) || {};
  check('sendEvent(): the payload arrives at the emulator', tel && tel.payload === '{"t":21.5}', JSON.stringify(tel));
  check('... with the property bag decoded', props.site === 'plant a' && props['a&b'] === 'c=d/e+f',
        JSON.stringify(props));
  check('... and the system properties ($.mid, $.ct, $.ce)', props['$.mid'] === 'sdk-1' &&
        props['$.ct'] === 'application/json' && props['$.ce'] === 'utf-8', JSON.stringify(props));
  await client.close();
}

// A 6 s token the SDK renews 3 s before it runs out: it reconnects with a
// fresh one, the emulator never has to drop it, and telemetry goes on.
async function renewals() {
  const id = DEV + '-2';
  const auth = SharedAccessKeyAuthenticationProvider.fromConnectionString(cs(id), 6, 3);
  const client = Client.fromAuthenticationProvider(auth, Mqtt);
  client.on('error', (e) => note('renewal client error: ' + e));
  await client.setOptions({ ca: CA });
  await client.open();
  let acked = 0, errors = 0;
  for (let i = 1; i <= 20; i++) {
    const m = new Message(JSON.stringify({ n: i }));
    m.properties.add('seq', String(i));
    try { await client.sendEvent(m); acked++; } catch (e) { errors++; note('sendEvent ' + i + ': ' + e.message); }
    await sleep(500);
  }
  await client.close();
  const connects = events((e) => e.ev === 'connect' && e.client === id);
  const expired = events((e) => e.ev === 'expired' && e.client === id);
  const seen = new Set(events((e) => e.ev === 'telemetry' && e.device === id).map((e) => e.props.seq));
  note(`renewals: ${connects.length} connections, ttl ${connects.map((c) => c.ttl).join(' ')}`);
  check('token renewal: the SDK reconnected with fresh tokens (>= 3 connections in ~10 s)',
        connects.length >= 3, connects.length);
  check('token renewal: every token the SDK sent verified (none refused)',
        events((e) => e.ev === 'refused' && e.client === id).length === 0);
  check('token renewal: the emulator never had to drop an expired token', expired.length === 0, expired.length);
  check('token renewal: every event acknowledged and arrived', acked === 20 && seen.size === 20,
        `acked ${acked}, arrived ${seen.size}, errors ${errors}`);
}

// A fixed token (no key, so no renewal) for a hub host with a port in it:
// sr = urlenc("localhost:PORT/devices/ID") carries "%3A"; the emulator drops
// the connection when the token runs out. The SDK, listening for C2D, tries
// to connect again with the same token and is refused (CONNACK 5).
async function expiry() {
  const id = DEV + '-3';
  const se = Math.floor(Date.now() / 1000) + 4;
  const sas = SharedAccessSignature.create(GATEWAY, id, KEY, se).toString();
  const client = Client.fromSharedAccessSignature(sas, Mqtt);
  client.on('error', () => {});   // its retries with the dead token
  client.on('message', () => {});
  await client.setOptions({ ca: CA });
  try {
    await client.open();
    check('a token for hub host ' + GATEWAY + ' (sr with %3A) verifies', true);
  } catch (e) {
    check('a token for hub host ' + GATEWAY + ' (sr with %3A) verifies', false, e.name + ': ' + e.message);
    return;
  }
  const twin = await client.getTwin().catch((e) => e);
  check('... and the twin GET over it is answered', twin && twin.properties !== undefined, String(twin));
  await waitFor(se * 1000 - Date.now() + 3000, () => events((e) => e.ev === 'refused' && e.client === id).length);
  check('an expired token: the emulator drops the connection at se', events((e) => e.ev === 'expired' &&
        e.client === id).length === 1);
  check('... refuses the SDK\'s reconnect with the same token', events((e) => e.ev === 'refused' &&
        e.client === id && /token expired/.test(e.why)).length >= 1);
  await client.close().catch(() => {});
}

async function wrongKey() {
  const id = DEV + '-4';
  const client = Client.fromConnectionString(cs(id, BADKEY), Mqtt);
  client.on('error', () => {});
  await client.setOptions({ ca: CA });
  let err;
  try { await client.open(); } catch (e) { err = e; }
  check('a wrong key: open() fails with UnauthorizedError (CONNACK 5)', err && err.name === 'UnauthorizedError',
        err ? err.name + ': ' + err.message : 'it connected');
  check('... the emulator names why', events((e) => e.ev === 'refused' && e.client === id &&
        /signature does not verify/.test(e.why)).length === 1);
  await client.close().catch(() => {});
}

(async () => {
  const t0 = Date.now();
  for (const step of [mainDevice, wrongKey, expiry, renewals]) {
    try {
      await step();
    } catch (e) {
      check(step.name + ' ran to its end', false, e.stack || e);
    }
  }
  const off = events((e) => e.ev === 'off_protocol');
  check('the SDK sent nothing the emulator holds to be off the hub\'s topics', off.length === 0,
        JSON.stringify(off));
  note(`${failed} failed, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  process.exit(failed ? 1 : 0);
})();
