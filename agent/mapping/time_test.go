package mapping

import (
	"encoding/json"
	"errors"
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
	for _, v := range []any{
		"2026-11-30T21:16:50", // local time without zone: which?
		"30.11.2026 21:16",
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
