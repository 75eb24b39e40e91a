package mqtttest

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Takeovers publishes numbered QoS 1 messages to topic "t" with publish
// while n connections one after the other take over a kept session of
// client id "takeover" (clean session off) subscribed to it at the broker
// at url, as an agent reconnecting or a reload's new source does. It
// returns how many were published and those that never came (waiting up
// to 10 s for them). A broker that loses none passes the session on whole.
func Takeovers(url string, n int, publish func([]byte) error) (published int, missing []int, err error) {
	var mu sync.Mutex
	got := map[int]bool{}
	handler := func(_ paho.Client, m paho.Message) {
		i, _ := strconv.Atoi(string(m.Payload()))
		mu.Lock()
		got[i] = true
		mu.Unlock()
	}
	dial := func() (paho.Client, error) {
		o := paho.NewClientOptions().AddBroker(url).SetClientID("takeover").SetCleanSession(false).
			SetProtocolVersion(4).SetAutoReconnect(false).SetDefaultPublishHandler(handler)
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(5 * time.Second) {
			return nil, errors.New("connect timed out")
		} else if err := tok.Error(); err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		return c, nil
	}
	c, err := dial()
	if err != nil {
		return 0, nil, err
	}
	if tok := c.Subscribe("t", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		c.Disconnect(0)
		return 0, nil, fmt.Errorf("subscribe: %v", tok.Error())
	}
	var pubErr error
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if pubErr = publish([]byte(strconv.Itoa(i))); pubErr != nil {
				return
			}
			published = i
			time.Sleep(20 * time.Microsecond)
		}
	}()
	for range n {
		c.Disconnect(0)
		if c, err = dial(); err != nil {
			break
		}
	}
	close(stop)
	<-done
	if c != nil && err == nil {
		defer c.Disconnect(0)
	}
	if err = errors.Join(err, pubErr); err != nil {
		return published, nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		missing = missing[:0]
		for i := 1; i <= published; i++ {
			if !got[i] {
				missing = append(missing, i)
			}
		}
		mu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) {
			return published, missing, nil
		}
	}
}
