// Serves a file:// npm registry folder to npm inside an install jail, on the jail's own loopback.
// npm speaks only HTTP(S) to registries. The folder is laid out like the registry's URLs:
// <root>/<name>.json is GET /<name> (the packument), <root>/<name>/-/<file>.tgz its tarballs.
// Tarball URLs in packuments are rewritten to this server, keeping their path.
// Usage: node local_registry.js <root> <port> <ready-file>
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');

const [root, port, ready] = process.argv.slice(2);
const base = path.resolve(root);

function notFound(res) {
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end('{"error":"Not found"}');
}

const server = http.createServer((req, res) => {
  let name;
  try {
    name = decodeURIComponent(new URL(req.url, 'http://localhost').pathname).replace(/^\/+/, '');
  } catch {
    return notFound(res);
  }
  const packument = !name.includes('/-/');
  const file = path.resolve(base, packument ? `${name}.json` : name);
  if (!file.startsWith(base + path.sep)) return notFound(res);
  fs.readFile(file, (err, data) => {
    if (err) return notFound(res);
    if (!packument) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      return res.end(data);
    }
    const doc = JSON.parse(data);
    const origin = `http://${req.headers.host}`;
    for (const version of Object.values(doc.versions || {})) {
      if (version.dist && version.dist.tarball) version.dist.tarball = origin + new URL(version.dist.tarball).pathname;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(doc));
  });
});

server.listen(Number(port), '127.0.0.1', () => fs.writeFileSync(ready, String(server.address().port)));
