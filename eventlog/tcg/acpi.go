package tcg

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// ACPITable is the ACPI "CCEL" table (ACPI 6.5 §5.2.34, CC Event Log ACPI
// Table): where the firmware put the CC event log and for which technology.
type ACPITable struct {
	Revision    uint8
	OEMID       string
	OEMTableID  string
	OEMRevision uint32
	// CCType is 1 for SEV, 2 for TDX (Hygon CSV firmware uses its own values).
	CCType    uint8
	CCSubtype uint8
	// LogAreaMinLength (LAML) is the size of the log area, padding included.
	LogAreaMinLength uint64
	// LogAreaStart (LASA) is the log area's physical address.
	LogAreaStart uint64
}

// CC types of the ACPI CCEL table.
const (
	CCTypeSEV = 1
	CCTypeTDX = 2
)

const acpiCCELSize = 56

// ParseACPITable parses the raw ACPI CCEL table (the content of
// /sys/firmware/acpi/tables/CCEL). It checks the signature, the length field
// and the checksum; errors are *eventlog.Error naming file and byte offset.
func ParseACPITable(name string, b []byte) (*ACPITable, error) {
	bad := func(off int, f string, a ...any) error {
		return &eventlog.Error{File: name, Record: -1, Offset: int64(off),
			Err: fmt.Errorf("%w: ACPI CCEL table: "+f, append([]any{mr.ErrMalformed}, a...)...)}
	}
	if len(b) < acpiCCELSize {
		return nil, bad(0, "%d bytes, need %d", len(b), acpiCCELSize)
	}
	if string(b[:4]) != "CCEL" {
		return nil, bad(0, "signature %q, want \"CCEL\"", b[:4])
	}
	if n := binary.LittleEndian.Uint32(b[4:]); uint64(n) != uint64(len(b)) {
		return nil, bad(4, "length field %d, but the table has %d bytes", n, len(b))
	}
	var sum byte
	for _, c := range b {
		sum += c
	}
	if sum != 0 {
		return nil, bad(9, "checksum does not add up (sum 0x%02x)", sum)
	}
	return &ACPITable{
		Revision:         b[8],
		OEMID:            string(trimNUL(b[10:16])),
		OEMTableID:       string(trimNUL(b[16:24])),
		OEMRevision:      binary.LittleEndian.Uint32(b[24:]),
		CCType:           b[36],
		CCSubtype:        b[37],
		LogAreaMinLength: binary.LittleEndian.Uint64(b[40:]),
		LogAreaStart:     binary.LittleEndian.Uint64(b[48:]),
	}, nil
}

func trimNUL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == 0 || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// Paths of the CCEL under sysfs.
const (
	SysfsCCELTable = "/sys/firmware/acpi/tables/CCEL"
	SysfsCCELData  = "/sys/firmware/acpi/tables/data/CCEL"
)

// ReadCCEL reads the ACPI CCEL table and the log area under root ("" or "/"
// for the running system; tests pass an emulated tree) and parses the eventlog.
// A log area longer than the table's LAML is cut to LAML.
func ReadCCEL(ctx context.Context, root string) (*ACPITable, *Log, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	tpath := filepath.Join(root, SysfsCCELTable)
	tb, err := os.ReadFile(tpath)
	if err != nil {
		return nil, nil, fmt.Errorf("read CCEL table: %w", err)
	}
	t, err := ParseACPITable(tpath, tb)
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	dpath := filepath.Join(root, SysfsCCELData)
	data, err := os.ReadFile(dpath)
	if err != nil {
		return t, nil, fmt.Errorf("read CCEL data: %w", err)
	}
	if t.LogAreaMinLength > 0 && uint64(len(data)) > t.LogAreaMinLength {
		data = data[:t.LogAreaMinLength]
	}
	l, err := Parse(dpath, data, eventlog.FormatCCEL)
	if err != nil {
		return t, nil, err
	}
	return t, l, nil
}
