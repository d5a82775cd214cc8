// tests/integration/s3rver.js: starts @20minutes/s3rver (the package's command-line entry point is
// missing) for tests/integration/s3rver.py, the second, independent S3 test server (issue 16).
// Environment: S3RVER_MODULES (the node_modules holding the package), S3RVER_DIR (its store),
// S3RVER_ACCESS_KEY, S3RVER_SECRET_KEY, S3RVER_BUCKETS (comma-separated). Listens on a free
// loopback port and prints {"port": N} on one line once it serves; exits on SIGTERM or when its
// standard input closes (the test process died).
'use strict'
const path = require('node:path')
const mods = process.env.S3RVER_MODULES
const S3rver = require(path.join(mods, '@20minutes/s3rver'))
const AWSAccount = require(path.join(mods, '@20minutes/s3rver/lib/models/account'))

// The only key pair is ours: the package's built-in S3RVER/S3RVER pair is revoked.
AWSAccount.DUMMY_ACCOUNT.revokeAccessKey('S3RVER')
AWSAccount.DUMMY_ACCOUNT.createKeyPair(process.env.S3RVER_ACCESS_KEY, process.env.S3RVER_SECRET_KEY)

const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  silent: true,
  directory: process.env.S3RVER_DIR,
  allowMismatchedSignatures: false,
  configureBuckets: (process.env.S3RVER_BUCKETS || 'drsup').split(',').map((name) => ({ name })),
})
server.run((err, addr) => {
  if (err) {
    console.error('s3rver: ' + err.message)
    process.exit(1)
  }
  process.stdout.write(JSON.stringify({ port: addr.port }) + '\n')
})
const stop = () => server.close(() => process.exit(0))
process.on('SIGTERM', stop)
process.stdin.on('end', stop)
process.stdin.resume()
