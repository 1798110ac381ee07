package vmr

// DefaultDir is the runtime-log folder of a guest: a tmpfs, so the logs
// end with the boot whose registers they describe.
const DefaultDir = "/run/ccmr"
