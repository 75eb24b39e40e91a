package mqtt

import (
	"context"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
)

// A message that arrives at once on a new connection (retained, or queued
// in the persistent session) may need an answer (the agent's rebirth
// request for a DATA by alias it cannot read): Publish works from the
// CONNACK on. It returned ErrNotConnected until the SUBSCRIBE was answered
// (the review: 2 of 40 runs).
func TestPublishAnsweringTheFirstMessageOfAConnection(t *testing.T) {
	url := startMochi(t, "tcp", nil, nil)
	p := newPublisher(t, url, nil)
	tok := p.c.Publish("t/x", 1, true, []byte("retained"))
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	errs := make(chan error, 1)
	var src *Source
	ready := make(chan struct{})
	sink := connectors.SinkFunc(func(_ context.Context, s connectors.Sample) error {
		<-ready
		select {
		case errs <- src.Publish("spBv1.0/g/NCMD/n", []byte("x")):
		default:
		}
		s.Done()
		return nil
	})
	var err error
	src, err = New(Config{Name: "b", URL: url, ClientID: "publish-early", Topics: []string{"t/#"}, ConnectTimeout: 3 * time.Second}, sink)
	if err != nil {
		t.Fatal(err)
	}
	close(ready)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { src.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case err := <-errs:
		if err != nil {
			t.Errorf("publish answering the first message of a connection: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
	}
}
