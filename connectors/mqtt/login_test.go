package mqtt

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors/mqtt/mqtttest"
)

// A broker refusing the login: the source's error (what status shows as
// the source's last error, and the log's warning) says whose login, and
// what to check — "not Authorized" alone named neither (the secrets test's
// log: "connect tcp://…: not Authorized"). The password is never in it.
func TestLoginRefusedNamesTheUser(t *testing.T) {
	b, err := mqtttest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	b.RequireLogin("line-reader", "right-password")
	for _, tc := range []struct {
		user, password string
		want           string
	}{
		{"line-reader", "wrong-password-91", "the broker refused user line-reader"},
		{"", "", "the broker wants a login"},
	} {
		src, err := New(Config{Name: "b", URL: b.URL(), ClientID: "login-" + tc.user, Topics: []string{"x"},
			Username: tc.user, Password: tc.password,
			BackoffMin: 10 * time.Millisecond, BackoffMax: 10 * time.Millisecond, ConnectTimeout: 5 * time.Second}, chanSink(nil))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		src.sleep = func(ctx context.Context, d time.Duration) error {
			cancel()
			return ctx.Err()
		}
		if err := src.Run(ctx); err != nil {
			t.Fatal(err)
		}
		last := src.Stats().LastError
		if !strings.Contains(last, tc.want) || !strings.Contains(last, "password_file") {
			t.Errorf("user %q: last error %q, want %q and what to check", tc.user, last, tc.want)
		}
		if tc.password != "" && strings.Contains(last, tc.password) {
			t.Errorf("the password is in the error: %q", last)
		}
	}
	if b.LoginsRefused() != 2 {
		t.Errorf("logins refused %d, want 2", b.LoginsRefused())
	}
}
