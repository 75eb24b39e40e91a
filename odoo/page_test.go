package odoo

import "testing"

// A page whose bytes lower to another length before its title (Latin-1,
// 'İ') is said by its title: cutting it at the indices of a lowered copy
// panicked (FuzzConnectAnswer found "<html\xb9<title>").
func TestPageTextOfAPageNotInUTF8(t *testing.T) {
	cases := []struct{ in, want string }{
		{"<html\xb9<title>", "an HTML page"},
		{"<html><!-- f\xfcr --><head><title>Wartung</title></head></html>", "Wartung (an HTML page)"},
		{"<html><head><meta content=\"İİİİİİİİ\"><TITLE>Bakım</TITLE></head></html>", "Bakım (an HTML page)"},
	}
	for _, tc := range cases {
		if got, ok := pageText(tc.in); !ok || got != tc.want {
			t.Errorf("pageText(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}
