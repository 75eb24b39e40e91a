package mapping

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// The source times a payload's timestamp_field may carry: RFC 3339 (with
// the lower-case "t" and "z" and the space for "T" RFC 3339 allows, which
// some gateways send, and an offset without colon) or epoch milliseconds,
// as a number or a string. A number out of range (seconds, not ms) is a
// time the receipt stands in for (ErrBadTime); what is no time at all
// fails the value (ErrBadValue).
func TestParseTime(t *testing.T) {
	want := time.Date(2026, 11, 30, 21, 16, 50, 313e6, time.UTC)
	for _, v := range []any{
		"2026-11-30T21:16:50.313Z",
		"2026-11-30t21:16:50.313z",
		"2026-11-30t21:16:50.313Z",
		"2026-11-30 21:16:50.313Z",
		"2026-11-30T23:16:50.313+02:00",
		"2026-11-30t23:16:50.313+02:00",
		"2026-11-30T23:16:50.313+0200",
		"1796073410313",
		"1796073410313.0",
		json.Number("1796073410313"),
		" 2026-11-30T21:16:50.313Z\n", // blanks around it (the payloads probe)
		" 1796073410313",
		// ISO 8601's other forms with a zone (the tz probe: refused, the
		// values skipped).
		"2026-11-30T23:16:50.313+02",                   // hours only
		"2026-11-30T22:16:50.313+01:00[Europe/Berlin]", // RFC 9557, Java's ZonedDateTime
		"2026-11-30 22:16:50.313 +0100",                // a blank before the offset
		"20261130T211650.313Z",                         // the basic form
		"2026-11-30t21:16:50,313z",                     // a decimal comma
		// A zone's abbreviation after the offset, or UTC by name (the
		// OT probe: refused, the values skipped).
		"2026-11-30 21:16:50.313 +0000 UTC",                 // Go's time.String
		"2026-11-30 22:16:50.313 +0100 CET",                 // the offset decides
		"2026-11-30 21:16:50.313 +0000 UTC m=+12.000000001", // with the monotonic reading
		"2026-11-30 21:16:50.313 UTC",
		"2026-11-30T21:16:50.313GMT",
		"2026-11-30T21:16:50.313Z UTC",
	} {
		got, err := parseTime(v)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%#v) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []any{
		"1796073410", // seconds, not ms
		json.Number("1796073410"),
	} {
		if got, err := parseTime(v); !errors.Is(err, ErrBadTime) {
			t.Errorf("parseTime(%#v) = %v, %v; want ErrBadTime", v, got, err)
		}
	}
	for v, want := range map[string]time.Time{
		"2026-11-30T21:16Z":      want.Truncate(time.Minute), // no seconds
		"2026-11-30T22:16+01:00": want.Truncate(time.Minute),
	} {
		if got, err := parseTime(v); err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%#v) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"2026-11-30T21:16:50", "2026-11-30 21:16", "20261130T211650"} {
		if _, err := parseTime(v); !errors.Is(err, ErrBadValue) || !strings.Contains(err.Error(), "has no time zone") {
			t.Errorf("parseTime(%q): %v, want it to say it has no time zone", v, err)
		}
	}
	for _, v := range []any{
		"2026-11-30T21:16:50", // local time without zone: which?
		"0x1.a2p+40",          // hexadecimal: ParseFloat reads it (the tz probe)
		"30.11.2026 21:16",
		"2026-11-30 22:16:50.313 CET", // a zone's abbreviation alone: which offset?
		"2026-11-30 21:16:50.313 +0000 UTC trailing",
		"yesterday",
		"",
		"NaN",
		true,
	} {
		if got, err := parseTime(v); !errors.Is(err, ErrBadValue) {
			t.Errorf("parseTime(%#v) = %v, %v; want ErrBadValue", v, got, err)
		}
	}
}
