package tdxverify

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-tdx-guest/pcs"
)

// TCB statuses as Intel's TCB info and QE identity name them, plus the two
// TD relaunch statuses Intel's QVL gives for a TD report 1.5.
const (
	StatusUpToDate                             = "UpToDate"
	StatusSWHardeningNeeded                    = "SWHardeningNeeded"
	StatusConfigurationNeeded                  = "ConfigurationNeeded"
	StatusConfigurationAndSWHardeningNeeded    = "ConfigurationAndSWHardeningNeeded"
	StatusOutOfDate                            = "OutOfDate"
	StatusOutOfDateConfigurationNeeded         = "OutOfDateConfigurationNeeded"
	StatusRevoked                              = "Revoked"
	StatusTDRelaunchAdvised                    = "TDRelaunchAdvised"
	StatusTDRelaunchAdvisedConfigurationNeeded = "TDRelaunchAdvisedConfigurationNeeded"
)

// ErrNoTCBLevel: no TCB level of the TCB info (or QE identity, or TDX
// module identity) covers the platform. The quote is not trusted.
var ErrNoTCBLevel = errors.New("no matching TCB level found")

// qeReportFields are the parts of the SGX enclave report of the QE that
// the QE identity constrains.
type qeReportFields struct {
	miscSelect []byte // 4 bytes, as in the report (little endian)
	attributes []byte // 16
	mrSigner   []byte // 32
	isvProdID  uint16
	isvSVN     uint16
	reportData []byte // 64
}

func parseQEReport(b []byte) qeReportFields {
	return qeReportFields{
		miscSelect: b[16:20],
		attributes: b[48:64],
		mrSigner:   b[128:160],
		isvProdID:  binary.LittleEndian.Uint16(b[256:]),
		isvSVN:     binary.LittleEndian.Uint16(b[258:]),
		reportData: b[320:384],
	}
}

// tcbEval is the outcome of the TCB evaluation.
type tcbEval struct {
	status     string
	advisories []string
	notes      []string // how the status came about, for Checked
}

func addAdvisories(dst []string, src []string) []string {
	for _, a := range src {
		if !slices.Contains(dst, a) {
			dst = append(dst, a)
		}
	}
	return dst
}

// platformLevel finds the platform's TCB level as Intel's QVL does
// (TcbLevelCheck): the first level (Intel lists them from newest down)
// whose 16 SGX components the PCK certificate's CPUSVN meets component by
// component and whose PCE SVN it meets; from there on, the first level
// whose TDX components the TEE_TCB_SVN meets. When the TDX module major
// version (TEE_TCB_SVN[1]) is non-zero, TDX components 0 and 1 describe
// the module and are judged by the TDX module identities instead. Every
// comparison is per component: a platform below a level in any one
// component is not at that level.
func platformLevel(info *pcs.TcbInfo, cpuSVN []byte, pceSVN uint16, teeTCBSVN [16]byte) (*pcs.TcbLevel, error) {
	if len(cpuSVN) != 16 {
		return nil, fmt.Errorf("PCK certificate CPUSVN has %d components, want 16", len(cpuSVN))
	}
	for i := range info.TcbLevels {
		l := &info.TcbLevels[i]
		if len(l.Tcb.SgxTcbcomponents) != 16 || len(l.Tcb.TdxTcbcomponents) != 16 {
			return nil, fmt.Errorf("TCB level %d: %d SGX and %d TDX components, want 16 each", i, len(l.Tcb.SgxTcbcomponents), len(l.Tcb.TdxTcbcomponents))
		}
	}
	sgx := -1
	for i := range info.TcbLevels {
		l := &info.TcbLevels[i]
		if pceSVN >= l.Tcb.Pcesvn && sgxAtLeast(cpuSVN, l) < 0 {
			sgx = i
			break
		}
	}
	if sgx < 0 {
		return nil, fmt.Errorf("%w: the PCK certificate's TCB (CPUSVN %x, PCESVN %d) is below every TCB level%s", ErrNoTCBLevel, cpuSVN, pceSVN, lowestGap(info, cpuSVN, pceSVN))
	}
	start := 0
	if teeTCBSVN[1] > 0 {
		start = 2
	}
levels:
	for i := sgx; i < len(info.TcbLevels); i++ {
		l := &info.TcbLevels[i]
		for j := start; j < 16; j++ {
			if teeTCBSVN[j] < l.Tcb.TdxTcbcomponents[j].Svn {
				continue levels
			}
		}
		return l, nil
	}
	return nil, fmt.Errorf("%w: TEE_TCB_SVN %x is below the TDX components of every TCB level from the platform's SGX level (%s) down", ErrNoTCBLevel, teeTCBSVN, info.TcbLevels[sgx].TcbStatus)
}

// sgxAtLeast returns the first SGX component where cpuSVN is below the
// level, or -1 when it meets them all.
func sgxAtLeast(cpuSVN []byte, l *pcs.TcbLevel) int {
	for j, c := range l.Tcb.SgxTcbcomponents {
		if cpuSVN[j] < c.Svn {
			return j
		}
	}
	return -1
}

// lowestGap describes why the lowest TCB level does not cover the
// platform, for the error message.
func lowestGap(info *pcs.TcbInfo, cpuSVN []byte, pceSVN uint16) string {
	if len(info.TcbLevels) == 0 {
		return " (the TCB info lists none)"
	}
	l := &info.TcbLevels[len(info.TcbLevels)-1]
	if j := sgxAtLeast(cpuSVN, l); j >= 0 {
		c := l.Tcb.SgxTcbcomponents[j]
		return fmt.Sprintf("; the lowest (%s, tcbDate %s) needs SGX component %d (%s %s) SVN %d, the platform has %d", l.TcbStatus, l.TcbDate, j, c.Category, c.Type, c.Svn, cpuSVN[j])
	}
	return fmt.Sprintf("; the lowest (%s, tcbDate %s) needs PCESVN %d, the platform has %d", l.TcbStatus, l.TcbDate, l.Tcb.Pcesvn, pceSVN)
}

// moduleLevel judges the TDX module (TEE_TCB_SVN[1] = major version,
// TEE_TCB_SVN[0] = its SVN) against the TDX module identity "TDX_<major>".
func moduleLevel(info *pcs.TcbInfo, body *TDReport, teeTCBSVN [16]byte) (*pcs.TcbLevel, string, error) {
	id := fmt.Sprintf("TDX_%02X", teeTCBSVN[1])
	for i := range info.TdxModuleIdentities {
		m := &info.TdxModuleIdentities[i]
		if !strings.EqualFold(m.ID, id) {
			continue
		}
		if !bytes.Equal(m.Mrsigner.Bytes, body.MRSignerSeam[:]) {
			return nil, id, fmt.Errorf("TDX module identity %s: MRSIGNERSEAM %x, identity wants %x", id, body.MRSignerSeam, m.Mrsigner.Bytes)
		}
		if err := maskedEqual(body.SeamAttributes[:], m.AttributesMask.Bytes, m.Attributes.Bytes); err != nil {
			return nil, id, fmt.Errorf("TDX module identity %s: SEAM attributes: %w", id, err)
		}
		for j := range m.TcbLevels {
			if uint32(teeTCBSVN[0]) >= m.TcbLevels[j].Tcb.Isvsvn {
				return &m.TcbLevels[j], id, nil
			}
		}
		return nil, id, fmt.Errorf("TDX module %s SVN %d: %w", id, teeTCBSVN[0], ErrNoTCBLevel)
	}
	return nil, id, fmt.Errorf("no TDX module identity %s in the TCB info: %w", id, ErrNoTCBLevel)
}

func maskedEqual(value, mask, want []byte) error {
	if len(value) != len(mask) || len(mask) != len(want) {
		return fmt.Errorf("sizes %d, mask %d, expected %d differ", len(value), len(mask), len(want))
	}
	for i := range value {
		if value[i]&mask[i] != want[i] {
			return fmt.Errorf("%x masked with %x is not %x", value, mask, want)
		}
	}
	return nil
}

// converge folds the status of a part that is out of date or revoked (the
// TDX module, the QE) into the platform status, as Intel's QVL does.
func converge(platform, part string) string {
	switch part {
	case StatusRevoked:
		return StatusRevoked
	case StatusOutOfDate, StatusOutOfDateConfigurationNeeded:
		switch platform {
		case StatusUpToDate, StatusSWHardeningNeeded:
			return StatusOutOfDate
		case StatusConfigurationNeeded, StatusConfigurationAndSWHardeningNeeded:
			return StatusOutOfDateConfigurationNeeded
		}
	}
	return platform
}

// evalTEE is the status of the platform with a given TEE_TCB_SVN: the
// platform level, converged with the TDX module level.
func evalTEE(info *pcs.TcbInfo, body *TDReport, cpuSVN []byte, pceSVN uint16, svn [16]byte) (tcbEval, error) {
	var ev tcbEval
	lvl, err := platformLevel(info, cpuSVN, pceSVN, svn)
	if err != nil {
		return ev, err
	}
	ev.status = string(lvl.TcbStatus)
	ev.advisories = addAdvisories(ev.advisories, lvl.AdvisoryIDs)
	ev.notes = append(ev.notes, fmt.Sprintf("platform TCB level %s (tcbDate %s)", lvl.TcbStatus, lvl.TcbDate))
	if svn[1] > 0 {
		ml, id, err := moduleLevel(info, body, svn)
		if err != nil {
			return ev, err
		}
		ev.status = converge(ev.status, string(ml.TcbStatus))
		ev.advisories = addAdvisories(ev.advisories, ml.AdvisoryIDs)
		ev.notes = append(ev.notes, fmt.Sprintf("TDX module %s SVN %d: %s", id, svn[0], ml.TcbStatus))
	} else {
		m := info.TdxModule
		if !bytes.Equal(m.Mrsigner.Bytes, body.MRSignerSeam[:]) {
			return ev, fmt.Errorf("TDX module: MRSIGNERSEAM %x, TCB info wants %x", body.MRSignerSeam, m.Mrsigner.Bytes)
		}
		if err := maskedEqual(body.SeamAttributes[:], m.AttributesMask.Bytes, m.Attributes.Bytes); err != nil {
			return ev, fmt.Errorf("TDX module: SEAM attributes: %w", err)
		}
	}
	return ev, nil
}

// evaluateTCB gives the quote's TCB status: the platform and TDX module
// status at launch (TEE_TCB_SVN); for a TD report 1.5 with a non-zero
// TEE_TCB_SVN2 also the status of the module running now, and a relaunch
// advice when only the launch TCB is out of date; then converged with the
// QE's status from the QE identity.
func evaluateTCB(info *pcs.TcbInfo, qeID *pcs.EnclaveIdentity, body *TDReport, cpuSVN []byte, pceSVN uint16, qe qeReportFields) (tcbEval, error) {
	ev, err := evalTEE(info, body, cpuSVN, pceSVN, body.TeeTCBSVN)
	if err != nil {
		return ev, err
	}
	if body.TD15 && body.TeeTCBSVN2 != [16]byte{} {
		cur, err := evalTEE(info, body, cpuSVN, pceSVN, body.TeeTCBSVN2)
		if err != nil {
			return ev, fmt.Errorf("TEE_TCB_SVN2 (the TDX module running now): %w", err)
		}
		ev.advisories = addAdvisories(ev.advisories, cur.advisories)
		ev.notes = append(ev.notes, "TEE_TCB_SVN2 (module running now): "+cur.status)
		if ev.status == StatusOutOfDate || ev.status == StatusOutOfDateConfigurationNeeded {
			switch cur.status {
			case StatusUpToDate, StatusSWHardeningNeeded:
				ev.status = StatusTDRelaunchAdvised
			case StatusConfigurationNeeded, StatusConfigurationAndSWHardeningNeeded:
				ev.status = StatusTDRelaunchAdvisedConfigurationNeeded
			}
		}
	}
	var ql *pcs.TcbLevel
	for i := range qeID.TcbLevels {
		if uint32(qe.isvSVN) >= qeID.TcbLevels[i].Tcb.Isvsvn {
			ql = &qeID.TcbLevels[i]
			break
		}
	}
	if ql == nil {
		return ev, fmt.Errorf("QE ISVSVN %d: %w in the QE identity", qe.isvSVN, ErrNoTCBLevel)
	}
	ev.notes = append(ev.notes, fmt.Sprintf("QE ISVSVN %d: %s", qe.isvSVN, ql.TcbStatus))
	ev.status = converge(ev.status, string(ql.TcbStatus))
	ev.advisories = addAdvisories(ev.advisories, ql.AdvisoryIDs)
	return ev, nil
}
