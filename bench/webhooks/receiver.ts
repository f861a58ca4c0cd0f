/**
 * The benchmark's receiver, a process of its own (a merchant's server): answers 204 to every
 * POST and prints `<webhook-id> <receipt time ms>` per request on stdout. Prints `listening <port>`
 * first.
 */
import { createServer } from "node:http"

const server = createServer((req, res) => {
  req.resume()
  req.on("end", () => {
    process.stdout.write(`${String(req.headers["webhook-id"])} ${Date.now()}\n`)
    res.writeHead(204)
    res.end()
  })
})
server.keepAliveTimeout = 5_000
server.listen(0, "127.0.0.1", () => {
  const address = server.address()
  process.stdout.write(`listening ${typeof address === "object" && address !== null ? address.port : 0}\n`)
})
process.on("SIGTERM", () => server.close(() => process.exit(0)))
