// tests/brokers/aedes/server.js — aedes as a broker for lume's integration
// tests (tests/integration/brokers.sh starts it; docs/brokers.md):
//
//   node server.js --port P [--tls-port P] [--mtls-port P] [--ws-port P]
//                  [--wss-port P] [--certs DIR] [--passwd USER:PASS]
//
// Every listener binds 127.0.0.1. Persistence is aedes-persistence in
// memory: retained messages, sessions and queued QoS 1 messages live as
// long as the process. Prints "aedes running" once every listener listens;
// exits on SIGTERM/SIGINT after closing them.
'use strict'
const net = require('node:net')
const tls = require('node:tls')
const http = require('node:http')
const https = require('node:https')
const fs = require('node:fs')
const path = require('node:path')
const { Aedes } = require('aedes')
const memoryPersistence = require('aedes-persistence') // in memory: retained messages too
const { WebSocketServer, createWebSocketStream } = require('ws')

function args (argv) {
  const o = {}
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)$/.exec(argv[i])
    if (!m || i + 1 >= argv.length) throw new Error(`bad argument '${argv[i]}'`)
    o[m[1]] = argv[++i]
  }
  if (!o.port) throw new Error('--port is required')
  return o
}

async function main () {
  const o = args(process.argv.slice(2))
  const broker = await Aedes.createBroker({ persistence: memoryPersistence() })
  if (o.passwd) {
    const [user, pass] = o.passwd.split(/:(.*)/s)
    broker.authenticate = (client, username, password, done) => {
      if (username === user && password && password.toString() === pass) return done(null, true)
      const e = new Error('bad user name or password')
      e.returnCode = username ? 4 : 5
      done(e, null)
    }
  }
  broker.on('clientError', (client, err) => console.error(`client ${client && client.id}: ${err.message}`))
  const certs = o.certs || '.'
  const tlsOpts = () => ({
    key: fs.readFileSync(path.join(certs, 'server.key')),
    cert: fs.readFileSync(path.join(certs, 'server.pem'))
  })
  const servers = []
  const listen = (server, port) => new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(Number(port), '127.0.0.1', resolve)
    servers.push(server)
  })
  const ws = (server) => {
    const wss = new WebSocketServer({ server, handleProtocols: (p) => p.has('mqtt') ? 'mqtt' : false })
    wss.on('connection', (socket, req) => broker.handle(createWebSocketStream(socket), req))
    return server
  }
  await listen(net.createServer(broker.handle), o.port)
  if (o['tls-port']) await listen(tls.createServer(tlsOpts(), broker.handle), o['tls-port'])
  if (o['mtls-port']) {
    const opts = { ...tlsOpts(), ca: fs.readFileSync(path.join(certs, 'ca.pem')), requestCert: true, rejectUnauthorized: true }
    await listen(tls.createServer(opts, broker.handle), o['mtls-port'])
  }
  if (o['ws-port']) await listen(ws(http.createServer()), o['ws-port'])
  if (o['wss-port']) await listen(ws(https.createServer(tlsOpts())), o['wss-port'])
  console.log(`aedes running (pid ${process.pid}) on 127.0.0.1:${o.port}`)
  const stop = () => {
    for (const s of servers) s.close()
    broker.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main().catch((e) => {
  console.error(`aedes: ${e.message}`)
  process.exit(e.code === 'EADDRINUSE' ? 3 : 1)
})
