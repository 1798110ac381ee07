package tcg

import (
	"fmt"

	gtcg "github.com/google/go-eventlog/tcg"
)

// EventType is a TCG event type (TCG PC Client Platform Firmware Profile).
type EventType uint32

// The event types this package treats specially.
const (
	EvPrebootCert              EventType = 0x00000000
	EvPostCode                 EventType = 0x00000001
	EvNoAction                 EventType = 0x00000003
	EvSeparator                EventType = 0x00000004
	EvAction                   EventType = 0x00000005
	EvEventTag                 EventType = 0x00000006
	EvSCRTMContents            EventType = 0x00000007
	EvSCRTMVersion             EventType = 0x00000008
	EvPlatformConfigFlags      EventType = 0x0000000A
	EvIPL                      EventType = 0x0000000D
	EvOmitBootDeviceEvents     EventType = 0x00000012
	EvEFIVariableDriverConfig  EventType = 0x80000001
	EvEFIVariableBoot          EventType = 0x80000002
	EvEFIBootServicesApp       EventType = 0x80000003
	EvEFIBootServicesDriver    EventType = 0x80000004
	EvEFIRuntimeServicesDriver EventType = 0x80000005
	EvEFIGPTEvent              EventType = 0x80000006
	EvEFIAction                EventType = 0x80000007
	EvEFIPlatformFirmwareBlob  EventType = 0x80000008
	EvEFIHandoffTables         EventType = 0x80000009
	EvEFIPlatformFirmwareBlob2 EventType = 0x8000000A
	EvEFIHandoffTables2        EventType = 0x8000000B
	EvEFIVariableBoot2         EventType = 0x8000000C
	EvEFIGPT2Event             EventType = 0x8000000D
	EvEFIHCRTMEvent            EventType = 0x80000010
	EvEFIVariableAuthority     EventType = 0x800000E0
	EvEFISPDMFirmwareBlob      EventType = 0x800000E1
	EvEFISPDMFirmwareConfig    EventType = 0x800000E2
	EvEFISPDMDevicePolicy      EventType = 0x800000E3
	EvEFISPDMDeviceAuthority   EventType = 0x800000E4
)

// Names go-eventlog v0.0.2 lacks (PC Client PFP 1.06, TCG2 event types).
var extraNames = map[EventType]string{
	EvEFIGPT2Event:           "EV_EFI_GPT2_EVENT",
	EvEFISPDMFirmwareBlob:    "EV_EFI_SPDM_FIRMWARE_BLOB",
	EvEFISPDMFirmwareConfig:  "EV_EFI_SPDM_FIRMWARE_CONFIG",
	EvEFISPDMDevicePolicy:    "EV_EFI_SPDM_DEVICE_POLICY",
	EvEFISPDMDeviceAuthority: "EV_EFI_SPDM_DEVICE_AUTHORITY",
}

// Name returns the specification's name (EV_SEPARATOR) and whether the type
// is known.
func (t EventType) Name() (string, bool) {
	if n, ok := extraNames[t]; ok {
		return n, true
	}
	if _, ok := gtcg.EventType(t).KnownName(); ok {
		return gtcg.EventType(t).TCGString(), true
	}
	return "", false
}

// String returns the EV_ name, or EV_0xNNNNNNNN for an unknown type.
func (t EventType) String() string {
	if n, ok := t.Name(); ok {
		return n
	}
	return fmt.Sprintf("EV_0x%08X", uint32(t))
}
