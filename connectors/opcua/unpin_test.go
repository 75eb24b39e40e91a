package opcua

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"
	"weak"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
)

// sessionBytes are the byte slices c's session keeps, by name: what
// gopcua decoded from the chunks of the CreateSession and ActivateSession
// answers.
func sessionBytes(t *testing.T, sess *opcua.Session) map[string][]byte {
	t.Helper()
	resp := unexported[*ua.CreateSessionResponse](sess, "resp")
	nonce := unexported[[]byte](sess, "serverNonce")
	cert := unexported[[]byte](sess, "serverCertificate")
	if resp == nil || *resp == nil || nonce == nil || cert == nil {
		t.Fatal("gopcua's Session keeps its answers elsewhere")
	}
	r := *resp
	out := map[string][]byte{
		"nonce of the ActivateSession answer": *nonce,
		"certificate":                         *cert,
		"CreateSession nonce":                 r.ServerNonce,
		"CreateSession certificate":           r.ServerCertificate,
	}
	if r.ServerSignature != nil {
		out["CreateSession signature"] = r.ServerSignature.Signature
	}
	for i, e := range r.ServerEndpoints {
		out["certificate of endpoint "+strconv.Itoa(i)] = e.ServerCertificate
	}
	return out
}

// gopcua's server announces chunks of 64 KiB and gopcua reads each chunk
// into a buffer that size, decoding the answer of one chunk in place: the
// session a connect makes kept slices of the CreateSession and
// ActivateSession answers' chunks, holding both for its life. The
// session dial leaves (the one a source works with) keeps copies of
// their size instead; and once a session is unpinned, the chunks it held
// are collected.
func TestSessionHoldsNoChunk(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := opcuatest.Start(ctx, 0, map[string]any{"X": uint32(1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	sec, errs := parseSecurity("None", "None", "")
	if len(errs) > 0 {
		t.Fatal(errs)
	}

	t.Run("dial", func(t *testing.T) {
		c, err := dial(ctx, clientParams{endpoint: srv.Endpoint(), sec: sec, requestTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer closeClient(c)
		kept := sessionBytes(t, c.Session())
		if len(kept["nonce of the ActivateSession answer"]) == 0 || len(kept["CreateSession nonce"]) == 0 {
			t.Fatalf("the server answered no nonces; nothing shows here: %v", kept)
		}
		for what, b := range kept {
			if cap(b) != len(b) {
				t.Errorf("%s: %d bytes in an array of %d: a slice of a chunk", what, len(b), cap(b))
			}
		}
		// The session still works: a read with its token.
		res, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(srv.NodeID("X")), AttributeID: ua.AttributeIDValue}}})
		if err != nil || len(res.Results) != 1 || res.Results[0].Status != ua.StatusOK {
			t.Fatalf("read on the unpinned session: %v, %v", res, err)
		}
	})

	t.Run("collected", func(t *testing.T) {
		opts, _, err := clientOptions(ctx, clientParams{endpoint: srv.Endpoint(), sec: sec, requestTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		c, err := opcua.NewClient(srv.Endpoint(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer closeClient(c)
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		// gopcua's session as Connect leaves it: its nonces are slices of
		// the chunks, weakly pointed at here.
		chunks := map[string]weak.Pointer[byte]{}
		for what, b := range sessionBytes(t, c.Session()) {
			if what != "nonce of the ActivateSession answer" && what != "CreateSession nonce" {
				continue
			}
			if cap(b) < minChunk {
				t.Fatalf("%s: %d bytes in an array of %d, not a chunk: gopcua decodes otherwise now", what, len(b), cap(b))
			}
			chunks[what] = weak.Make(&b[0])
		}
		if len(chunks) != 2 {
			t.Fatalf("the session keeps %d of the two nonces", len(chunks))
		}
		runtime.GC()
		for what, p := range chunks {
			if p.Value() == nil {
				t.Fatalf("the chunk of the %s was collected while the session held it: this shows nothing", what)
			}
		}

		before := c.Session()
		unpin(c)
		if c.Session() == before {
			t.Fatal("unpin left the session as it was")
		}
		before = nil
		deadline := time.Now().Add(30 * time.Second)
		for {
			runtime.GC()
			left := 0
			for _, p := range chunks {
				if p.Value() != nil {
					left++
				}
			}
			if left == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of the 2 chunks still held after unpin", left)
			}
			time.Sleep(50 * time.Millisecond)
		}
		res, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(srv.NodeID("X")), AttributeID: ua.AttributeIDValue}}})
		if err != nil || len(res.Results) != 1 || res.Results[0].Status != ua.StatusOK {
			t.Fatalf("read on the unpinned session: %v, %v", res, err)
		}
	})
}

// The node ids a session keeps (its authentication token, with many
// servers a GUID or a ByteString) are decoded again from their own bytes:
// a GUID's last eight bytes and a ByteString id were slices of the buffer
// they came in.
func TestOwnNodeIDHoldsNoBuffer(t *testing.T) {
	for _, id := range []*ua.NodeID{
		ua.NewGUIDNodeID(1, "72962B91-FA75-4AE6-8D28-B404DC7DAF63"),
		ua.NewByteStringNodeID(2, []byte("a token of bytes")),
		ua.NewNumericNodeID(0, 7),
	} {
		enc, err := id.Encode()
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64<<10)
		copy(buf, enc)
		p := weak.Make(&buf[0])
		got := new(ua.NodeID)
		if _, err := got.Decode(buf); err != nil {
			t.Fatal(err)
		}
		buf = nil
		own := ownNodeID(got)
		got = nil
		deadline := time.Now().Add(30 * time.Second)
		for runtime.GC(); p.Value() != nil; runtime.GC() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the buffer it was decoded from is still held", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if own.String() != id.String() {
			t.Errorf("own copy %s, want %s", own, id)
		}
	}
}
