#!/usr/bin/env node
// tests/azure-sdk/dps_sdk.js — Microsoft's Node.js provisioning device SDK
// (ProvisioningDeviceClient, SymmetricKeySecurityClient, the MQTT transport)
// registers against a DPS endpoint: here tests/integration/dps_emulator.py,
// so that the emulator is checked against the service's own client, not
// against lume's reading of the protocol (tests/integration/test_dps_sdk.sh).
//
//   node dps_sdk.js --host 127.0.0.1:PORT --scope ID_SCOPE --registration ID
//                   (--key BASE64 | --group-key BASE64) [--model-id DTMI]
//
// The SDK connects with mqtts:// to the host; trust the emulator's test CA
// with NODE_EXTRA_CA_CERTS. Prints the registration state as one JSON line;
// exit 0 when assigned, 1 on an error (printed on stderr), 2 on usage.
'use strict';

const crypto = require('crypto');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt } = require('azure-iot-provisioning-device-mqtt');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');

function args(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) return null;
    o[argv[i].slice(2)] = argv[i + 1];
  }
  return o;
}

const o = args(process.argv.slice(2));
if (!o || !o.host || !o.scope || !o.registration || !(o.key || o['group-key'])) {
  process.stderr.write('usage: dps_sdk.js --host H:P --scope S --registration R ' +
                       '(--key K | --group-key G) [--model-id M]\n');
  process.exit(2);
}

// A group enrollment's device key, as Microsoft's samples derive it.
const key = o.key || crypto.createHmac('SHA256', Buffer.from(o['group-key'], 'base64'))
  .update(o.registration, 'utf8').digest('base64');

const security = new SymmetricKeySecurityClient(o.registration, key);
const client = ProvisioningDeviceClient.create(o.host, o.scope, new Mqtt(), security);
if (o['model-id']) client.setProvisioningPayload({ modelId: o['model-id'] });

const timer = setTimeout(() => {
  process.stderr.write('no answer within 60 s\n');
  process.exit(1);
}, 60000);

client.register((err, result) => {
  clearTimeout(timer);
  if (err) {
    process.stderr.write('registration failed: ' + (err.name || '') + ': ' + err.message + '\n');
    process.exit(1);
  }
  process.stdout.write(JSON.stringify({
    assignedHub: result.assignedHub, deviceId: result.deviceId, status: result.status,
    substatus: result.substatus, registrationId: result.registrationId,
  }) + '\n');
  process.exit(result.status === 'assigned' ? 0 : 1);
});
