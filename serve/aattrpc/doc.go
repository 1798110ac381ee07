// Package aattrpc serves the CoCo attestation agent's ttrpc method
// ExtendRuntimeMeasurement on a second socket of `ccmr serve`
// (--aa-socket), so that the guest's existing CoCo clients (the
// confidential data hub's image-pull measurement, ttrpc-aa-client, the
// api-server-rest) measure into ccmr's runtime log unchanged, instead of
// into a second log of the agent's own on the same register, which would
// break both logs' replay.
//
// The wire is the agent's: service attestation_agent.AttestationAgentService,
// method ExtendRuntimeMeasurement (ttrpc path
// /attestation_agent.AttestationAgentService/ExtendRuntimeMeasurement),
// request {Domain=1, Operation=2, Content=3, optional RegisterIndex=4},
// response {Result=1} (package aapb). The record `Domain Operation Content`
// is appended to the vmr store's runtime log as the agent writes its
// eventlog: a TCG_PCR_EVENT2 entry, EV_EVENT_TAG, one digest of the
// register's bank over the TCG_PCClientTaggedEvent "AAEL" around the text,
// the CC MR index (TDX) or PCR number in the entry; that digest is
// extended into the backing register. It goes through the store's
// write protocol and group commit (fsync before extend, recovery on
// restart), where the agent uses a write-ahead file; the bytes in the
// log are the same.
//
// RegisterIndex is the agent's PCR number. Absent, the agent's default
// (PCR 17) is meant, which on TDX is RTMR3 and here is the store's backing
// register. Given, it must name the backing register the way the agent
// maps it: on TDX by the agent's pcr_to_ccmr (PCR 1 and 7 → RTMR0, 2-6 →
// RTMR1, 8-15 → RTMR2, any other → RTMR3), on a TPM the PCR itself; any
// other index is InvalidArgument and nothing is written (the agent would
// extend another register, outside this log).
//
// Authorization is the HTTP API's: the peer is identified by the kernel
// (serve.PeerOf: SO_PEERCRED, cgroup, admin) and judged by the same
// serve.Policy. A record whose domain is a virtual register (mr_*) is a
// virtual extend and needs the right to extend that register; domain
// ccmr is refused to everyone (only ccmr writes its snapshot records); any
// other domain needs a rule's "aa" pattern matching it. Without a policy,
// root alone. A refusal is PermissionDenied, writes nothing, and is logged
// with the peer.
//
// Differences from the agent, on purpose: the record must pass ccmr's
// rules for the runtime log (aael: printable ASCII, so no LF, no other
// control byte and no UTF-8 beyond ASCII; at most aael.MaxRecordSize
// bytes), where the agent refuses only LF; an error is a ttrpc status with
// a message saying why (InvalidArgument, PermissionDenied, Internal) where
// the agent answers Internal; the agent's other methods (GetEvidence,
// GetToken, BindInitData, GetTeeType, ...) are Unimplemented, so a client
// that needs them keeps talking to the agent (docs/serve.md).
//
// Sources read (confidential-containers/guest-components):
// protos/protos/attestation-agent/attestation-agent.proto (messages,
// service), attestation-agent/attestation-agent/src/eventlog/mod.rs and
// eventlog/tcg2.rs (how the record is written and extended),
// attestation-agent/attestation-agent/src/lib.rs (RegisterIndex: default
// eventlog_config.init_pcr), src/config/mod.rs (DEFAULT_PCR_INDEX 17),
// attestation-agent/attester/src/tdx/mod.rs (pcr_to_ccmr),
// attestation-agent/attester/src/az_tdx_vtpm/mod.rs (vTPM: the PCR
// itself), attestation-agent/attestation-agent/src/bin/ttrpc-aa.rs (the
// default socket), confidential-data-hub/hub/src/hub.rs (the image-pull
// record).
package aattrpc
