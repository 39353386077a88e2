#!/usr/bin/env node
// Keep-alive launcher for the Cosmos DB emulator server (@vercel/cosmosdb-server).
//
// Why not its CLI: the CLI answers every request with `connection: close`, so each SDK call
// pays a fresh TLS handshake (~28 upserts/s). Created here with keepAlive it does ~500/s.
// It also maps the server's 500 for reading a missing document to the 404 real Cosmos
// sends, so the adapters see real Cosmos semantics.
//
// Usage: node scripts/cosmos-server.js [--host 127.0.0.1] [--port 8081] [--data DIR]
//                                      [--cert FILE --key FILE]
// Without --cert/--key it creates a self-signed certificate for 127.0.0.1/localhost in DIR
// (openssl), falling back to the one the package ships (expired; clients skip
// verification anyway: COSMOS_VERIFY_TLS=false). Prints "ready https://HOST:PORT" when up.
"use strict";

const fs = require("fs");
const path = require("path");
const os = require("os");
const { execFileSync } = require("child_process");

const root = path.resolve(__dirname, "..");
const { createHttpsServer } = require(path.join(root, "node_modules", "@vercel", "cosmosdb-server"));

const args = { host: "127.0.0.1", port: 8081, data: null, cert: null, key: null };
const argv = process.argv.slice(2);
while (argv.length) {
  const flag = argv.shift();
  const value = argv.shift();
  if (!flag.startsWith("--") || value === undefined || !(flag.slice(2) in args)) {
    console.error(`usage: cosmos-server.js [--host H] [--port P] [--data DIR] [--cert F --key F] (bad ${flag})`);
    process.exit(2);
  }
  args[flag.slice(2)] = flag === "--port" ? parseInt(value, 10) : value;
}

function certificate() {
  if (args.cert && args.key) return { cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) };
  const dir = args.data || fs.mkdtempSync(path.join(os.tmpdir(), "cosmos-cert-"));
  fs.mkdirSync(dir, { recursive: true });
  const certFile = path.join(dir, "cosmos-cert.pem");
  const keyFile = path.join(dir, "cosmos-key.pem");
  if (!fs.existsSync(certFile) || !fs.existsSync(keyFile)) {
    try {
      execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout", keyFile, "-out", certFile], { stdio: "ignore" });
    } catch (err) {
      const pkg = path.join(root, "node_modules", "@vercel", "cosmosdb-server");
      console.error(`openssl failed (${err.message}); using the certificate the package ships`);
      return { cert: fs.readFileSync(path.join(pkg, "cert.pem")), key: fs.readFileSync(path.join(pkg, "key.pem")) };
    }
  }
  return { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) };
}

const DOC_URL = /^\/dbs\/[^/]+\/colls\/[^/]+\/docs\/[^/?]+\/?(\?.*)?$/;

const server = createHttpsServer({ ...certificate(), keepAlive: true });
server.keepAliveTimeout = 60000;

// Wrap the package's request handler: a GET of a missing document throws inside the server
// (it reads a property of `undefined`) and is answered 500; real Cosmos answers 404.
const handlers = server.listeners("request");
server.removeAllListeners("request");
server.on("request", (req, res) => {
  if (req.method === "GET" && DOC_URL.test(req.url)) {
    const end = res.end.bind(res);
    res.end = (chunk, ...rest) => {
      if (res.statusCode === 500 && !res.headersSent) {
        res.statusCode = 404;
        chunk = JSON.stringify({ code: "NotFound",
          message: "Entity with the specified id does not exist in the system." });
      }
      return end(chunk, ...rest);
    };
  }
  for (const handler of handlers) handler.call(server, req, res);
});

// The package logs the TypeError of a missing-document read before we map it; keep quiet.
const consoleError = console.error;
console.error = (...items) => {
  const first = items[0];
  if (first instanceof TypeError && /reading '/.test(first.message)) return;
  consoleError(...items);
};

server.listen(args.port, args.host, () => {
  const { port } = server.address();
  console.log(`ready https://${args.host}:${port}`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.close(() => process.exit(0)) && setTimeout(() => process.exit(0), 1000).unref());
}
