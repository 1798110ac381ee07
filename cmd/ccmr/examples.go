package main

import "github.com/spf13/cobra"

// examples are the Example sections of every command's help, by command
// path. They are kept together so that TestExamples can parse each line
// against the command tree (a renamed flag or command fails it) and check
// that no command lacks one; every line runs on the sim device
// (--device sim, or CCMR_DEVICE) given the files it names.
var examples = map[string]string{
	"ccmr": `  ccmr --device sim read rtmr3
  ccmr -o json registers
  ccmr -q verify bundle.json --policy policy.json`,
	"ccmr registers": `  ccmr registers
  ccmr --device tpm -o json registers`,
	"ccmr read": `  ccmr read
  ccmr read RTMR3 mr_ima
  ccmr --device tpm read pcr10`,
	"ccmr extend": `  ccmr extend rtmr3 --digest sha384:4b601b149817ddead5bd4493796fb170192f690f0e4fdd5d967b99e06f10b49cd32d23e5f5f7b2a5f1ae56695fef37e7
  ccmr extend mr_app --data app.tar
  tar c app | ccmr extend mr_app --data -`,
	"ccmr version": `  ccmr version
  ccmr -o json version`,
	"ccmr vmr": `  ccmr vmr list
  ccmr vmr read mr_ima`,
	"ccmr vmr list": `  ccmr vmr list
  ccmr -o json vmr list`,
	"ccmr vmr read": `  ccmr vmr read
  ccmr vmr read mr_ima mr_app`,
	"ccmr ima": `  ccmr ima forward --once
  ccmr ima aggregate /sys/kernel/security/ima/binary_runtime_measurements`,
	"ccmr ima forward": `  ccmr ima forward --once
  ccmr ima forward --interval 10s
  ccmr ima forward --once --ima-log binary_runtime_measurements --register mr_ima`,
	"ccmr ima aggregate": `  ccmr ima aggregate /sys/kernel/security/ima/binary_runtime_measurements
  ccmr ima aggregate --format ima-ascii ascii_runtime_measurements
  ssh guest cat /sys/kernel/security/ima/binary_runtime_measurements | ccmr ima aggregate -`,
	"ccmr log": `  ccmr log show /sys/kernel/security/tpm0/binary_bios_measurements
  ccmr log replay binary_runtime_measurements --expect pcr10=sha256:716a566254165bf514b44e6c1eb182a532c5496206ed3d192b5db7794d85a32c`,
	"ccmr log show": `  ccmr log show /sys/kernel/security/tpm0/binary_bios_measurements
  ccmr -o json log show --format ima-ascii ascii_runtime_measurements
  cat /sys/firmware/acpi/tables/data/CCEL | ccmr log show -`,
	"ccmr log replay": `  ccmr log replay /run/ccmr/rtmr3.log
  ccmr log replay binary_runtime_measurements --expect pcr10=sha256:716a566254165bf514b44e6c1eb182a532c5496206ed3d192b5db7794d85a32c
  ccmr log replay binary_runtime_measurements --ima-keys ima.pem --require-signatures
  cat binary_bios_measurements | ccmr log replay - --expect PCR0=sha256:e21b703ee69c77476bccb43ec0336a9a1b2914b378944f7b00a10214ca8fea93`,
	"ccmr log export": `  ccmr log export /run/ccmr/rtmr3.log --to cel-json -O rtmr3.cel
  ccmr log export binary_runtime_measurements --to cel-json`,
	"ccmr log cut": `  ccmr log cut
  ccmr --log-dir /run/ccmr log cut`,
	"ccmr quote": `  ccmr quote --nonce 0a0b0c0d -O bundle.json
  ccmr quote -O - | ssh verifier ccmr verify -`,
	"ccmr verify": `  ccmr verify bundle.json --policy policy.json --nonce 0a0b0c0d
  ccmr verify bundle.json --allow-sim --trust-sim-key key.pem --nonce 0a0b0c0d
  ccmr -q verify bundle.json --trust-ak ak.pem --policy policy.json
  ccmr -o json verify - --policy policy.json < bundle.json`,
	"ccmr serve": `  ccmr serve --policy /etc/ccmr/serve-policy.json
  ccmr serve --socket /run/ccmr/ccmr.sock --socket-mode 0660 --socket-group ccmr --policy policy.json`,
	"ccmr verifier": `  ccmr verifier serve --listen 127.0.0.1:8443 --db sqlite:/var/lib/ccmr/fleet.db --groups /etc/ccmr/groups
  ccmr verifier enroll --db sqlite:/var/lib/ccmr/fleet.db --machine web-1 --group web --platform tpm --key ak.pem`,
	"ccmr verifier serve": `  ccmr verifier serve --listen 127.0.0.1:8443 --db sqlite:/var/lib/ccmr/fleet.db --groups /etc/ccmr/groups
  ccmr verifier serve --listen :8443 --db postgres://ccmr@db/ccmr --groups groups --ear-key ear.pem`,
	"ccmr verifier enroll": `  ccmr verifier enroll --db sqlite:/var/lib/ccmr/fleet.db --machine web-1 --group web --platform tpm --key ak.pem`,
	"ccmr attest":          `  ccmr attest --to http://verifier.example:8443 --machine web-1`,
	"ccmr key": `  ccmr key -O key.pem
  ccmr --device tpm key -O ak.pem`,
	"ccmr evidence": `  ccmr evidence import -O bundle.json --tdx-quote quote.bin --log ccel=CCEL
  ccmr evidence show bundle.json`,
	"ccmr evidence import": `  ccmr evidence import -O bundle.json --tdx-quote quote.bin --collateral collateral.json --log ccel=CCEL
  ccmr evidence import -O bundle.json --tpm-quote quote.msg --tpm-sig quote.sig --tpm-pcrs quote.pcrs --ak ak.pub
  ccmr evidence import -O bundle.json --snp-report report.bin --vcek vcek.pem`,
	"ccmr evidence show": `  ccmr evidence show bundle.json
  ccmr -o json evidence show bundle.json --allow-sim --trust-sim-key key.pem`,
	"ccmr policy": `  ccmr policy create --from bundle.json --allow-sim --trust-sim-key key.pem -O policy.json
  ccmr policy create --runtime --ima binary_runtime_measurements -O runtime-policy.json`,
	"ccmr policy create": `  ccmr policy create --from bundle.json --allow-sim --trust-sim-key key.pem -O policy.json
  ccmr policy create --from bundle.json --trust-ak ak.pem --registers pcr0,pcr4,mr_app -O policy.json
  ccmr policy create --runtime --ima binary_runtime_measurements -O runtime-policy.json
  ccmr policy create --runtime --dir /usr/bin --algo sha256 -O runtime-policy.json`,
}

// addExamples sets the Example section of cmd and its subcommands.
func addExamples(cmd *cobra.Command) {
	if ex, ok := examples[cmd.CommandPath()]; ok {
		cmd.Example = ex
	}
	for _, c := range cmd.Commands() {
		addExamples(c)
	}
}
