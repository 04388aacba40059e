// Microsoft's Hybrid Connections client (the hyco-https npm package, unmodified) against a gateway, for
// tests/integration/test_hyco_clients.py. Prints one line: LISTENING, ERROR <what>, TIMEOUT, or STATUS <n> <body>.
//
//   node hyco_client.js listen URI KEY_NAME KEY      a listener's control channel (wss, token in a header)
//   node hyco_client.js send   URL KEY_NAME KEY      a sender's HTTPS request (token in ServiceBusAuthorization)
//
// The CA is given with NODE_EXTRA_CA_CERTS; hyco-https is found through NODE_PATH.
'use strict';
const hyco = require('hyco-https');
const nodeHttps = require('https');

const [mode, uri, keyName, key] = process.argv.slice(2);
const timer = setTimeout(() => { console.log('TIMEOUT'); process.exit(2); }, 15000);

if (mode === 'listen') {
  const server = hyco.createRelayedServer(
    { server: uri, token: () => hyco.createRelayToken(uri, keyName, key) },
    (req, res) => { res.end('hello'); });
  server.on('listening', () => { console.log('LISTENING'); clearTimeout(timer); process.exit(0); });
  server.on('error', (event) => {
    console.log('ERROR ' + (event && (event.message || event.type) || 'unknown'));
    clearTimeout(timer);
    process.exit(1);
  });
  server.listen();
} else if (mode === 'send') {
  const token = hyco.createRelayToken(uri, keyName, key);
  const request = nodeHttps.request(uri, { method: 'POST', headers: { ServiceBusAuthorization: token } }, (res) => {
    let body = '';
    res.on('data', (chunk) => { body += chunk; });
    res.on('end', () => { console.log('STATUS ' + res.statusCode + ' ' + body); clearTimeout(timer); process.exit(0); });
  });
  request.on('error', (error) => { console.log('ERROR ' + error.message); process.exit(1); });
  request.end('payload from hyco');
} else {
  console.log('ERROR unknown mode ' + mode);
  process.exit(1);
}
