// Package serve is the logged-extend service of `ccmr serve`: one daemon
// that owns the runtime log and its backing register (a vmr.Store, with its
// crash-safe write protocol and group commit) and lets every writer in the
// guest extend, read and quote through a Unix socket, as far as an
// authorization policy lets the peer the kernel names (SO_PEERCRED, cgroup).
//
// The API is HTTP/JSON over the socket (docs/openapi-serve.yaml):
//
//	POST /v1/extend          {"register", "digest": "ALG:HEX" | "data": BASE64}
//	GET  /v1/registers       virtual registers with their values
//	GET  /v1/registers/NAME  one register (virtual or real)
//	POST /v1/quote           {"nonce": HEX} → ccmr-evidence/v2 bundle (zip), streamed
//	GET  /v1/health
//
// A request that does not parse, or that the policy refuses, is answered
// 4xx before anything is written; a refusal is logged with the peer.
//
// The CoCo attestation agent's ttrpc ExtendRuntimeMeasurement is served on
// a second socket by package serve/aattrpc, with PeerOf, LimitListener and
// the same Policy (its "aa" domains).
package serve
