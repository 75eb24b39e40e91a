package mqtt

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
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
		var logs bytes.Buffer
		src, err := New(Config{Name: "b", URL: b.URL(), ClientID: "login-" + tc.user, Topics: []string{"x"},
			Username: tc.user, Password: tc.password, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			BackoffMin: 10 * time.Millisecond, BackoffMax: 10 * time.Millisecond, ConnectTimeout: 5 * time.Second}, chanSink(nil))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		tries := 0
		src.sleep = func(ctx context.Context, d time.Duration) error {
			if tries++; tries == 3 {
				cancel()
				return ctx.Err()
			}
			return nil
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
		// It needs a person: an error in the log, once for the three
		// refusals; the password never.
		if n := strings.Count(logs.String(), "level=ERROR msg=\"mqtt broker refused the login"); n != 1 || strings.Contains(logs.String(), "level=WARN") {
			t.Errorf("user %q: %d errors for the refused login, want 1 and no warning:\n%s", tc.user, n, logs.String())
		}
		if tc.password != "" && strings.Contains(logs.String(), tc.password) {
			t.Errorf("the password is in the log:\n%s", logs.String())
		}
	}
	if b.LoginsRefused() != 6 {
		t.Errorf("logins refused %d, want 6", b.LoginsRefused())
	}
}

// A refused login is tried again a minute later at the earliest, as the
// OPC UA source tries a refused user again, not at the reconnect backoff
// (here 10 ms): brokers lock accounts, and fail2ban bans addresses, after
// a few failed logins. The log says why it waits. A connect that fails
// otherwise (nothing listening) keeps the backoff.
func TestRefusedLoginWaitsAMinute(t *testing.T) {
	b, err := mqtttest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	b.RequireLogin("line-reader", "right-password")
	run := func(password string) (waits []time.Duration, logs string) {
		t.Helper()
		var buf bytes.Buffer
		src, err := New(Config{Name: "b", URL: b.URL(), ClientID: "wait-" + password, Topics: []string{"x"},
			Username: "line-reader", Password: password, Logger: slog.New(slog.NewTextHandler(&buf, nil)),
			BackoffMin: 10 * time.Millisecond, BackoffMax: 10 * time.Millisecond, ConnectTimeout: 5 * time.Second}, chanSink(nil))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		src.sleep = func(ctx context.Context, d time.Duration) error {
			if waits = append(waits, d); len(waits) == 3 {
				cancel()
				return ctx.Err()
			}
			return nil
		}
		if err := src.Run(ctx); err != nil {
			t.Fatal(err)
		}
		return waits, buf.String()
	}
	waits, logs := run("wrong-password-17")
	for i, d := range waits {
		if d < time.Minute {
			t.Errorf("wait %d after the refused login: %s, want a minute at least", i+1, d)
		}
	}
	if len(waits) != 3 || b.LoginsRefused() != 3 {
		t.Errorf("%d waits, %d logins refused, want 3 each", len(waits), b.LoginsRefused())
	}
	if !strings.Contains(logs, "level=ERROR msg=\"mqtt broker refused the login; trying again in a minute") {
		t.Errorf("the log does not say why it waits:\n%s", logs)
	}
	_ = b.Close()
	waits, _ = run("right-password")
	for i, d := range waits {
		if d > 10*time.Millisecond {
			t.Errorf("wait %d with nothing listening: %s, want the backoff's 10 ms at most", i+1, d)
		}
	}
}

// While the source waits to try a refused login again, Stats says when the
// next attempt is (what status shows a technician who fixed the password
// on the broker); a connect clears it.
func TestRefusedLoginSaysTheNextAttempt(t *testing.T) {
	b, err := mqtttest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	b.RequireLogin("line-reader", "right-password")
	src, err := New(Config{Name: "b", URL: b.URL(), ClientID: "next-attempt", Topics: []string{"x"},
		Username: "line-reader", Password: "fixed-on-the-broker",
		BackoffMin: 10 * time.Millisecond, BackoffMax: 10 * time.Millisecond, ConnectTimeout: 5 * time.Second}, chanSink(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type seen struct {
		wait        time.Duration
		before      time.Time // taken before the wait began: its end is after before+wait
		next, after time.Time
	}
	var waits []seen
	var before time.Time
	src.sleep = func(ctx context.Context, d time.Duration) error {
		waits = append(waits, seen{wait: d, before: before, next: src.Stats().NextAttempt, after: time.Now()})
		// The password fixed on the broker: the next attempt logs in.
		b.RequireLogin("line-reader", "fixed-on-the-broker")
		return nil
	}
	// before: no sooner than the refused connect began.
	before = time.Now()
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for src.State() != connectors.StateConnected && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if src.State() != connectors.StateConnected {
		t.Fatalf("not connected after the password was fixed: %+v", src.Stats())
	}
	if len(waits) != 1 {
		t.Fatalf("%d waits, want the one after the refused login", len(waits))
	}
	w := waits[0]
	if w.wait < time.Minute || w.next.Before(w.before.Add(w.wait)) || w.next.After(w.after.Add(w.wait)) {
		t.Errorf("while waiting %s after the refused login: next attempt %v, want between %v and %v",
			w.wait, w.next, w.before.Add(w.wait), w.after.Add(w.wait))
	}
	if st := src.Stats(); !st.NextAttempt.IsZero() {
		t.Errorf("connected, next attempt still %v", st.NextAttempt)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
