package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/connectors/mqtt"
)

func init() { validateMQTT = checkMQTT }

// mqttWait is how long validate --mqtt listens for a first message per topic.
const mqttWait = 5 * time.Second

// checkMQTT connects to every broker the machines use (under a client id of
// its own, leaving the agent's session alone), subscribes to their topics,
// and checks the first message each brings within mqttWait: the field must
// be there and hold a value its signal can use. A topic without a message
// meanwhile is reported as not checked, not as a problem: machines publish
// when they have something to say.
func checkMQTT(ctx context.Context, cfg *config.Config, file string, w io.Writer) error {
	c := &sourceCheck{w: w, cfg: cfg, file: file, kind: "mqtt"}
	for bi, b := range cfg.MQTT {
		uses, topics := usesOf(cfg, "mqtt", b.Name)
		if len(topics) == 0 {
			fmt.Fprintf(w, "mqtt %s: no machine uses it\n", b.Name)
			continue
		}
		mc, err := agent.MQTTConfig(b, topics, nil)
		var infos []mqtt.TopicInfo
		t0 := time.Now()
		if err == nil {
			infos, err = mqtt.Inspect(ctx, mc, mqttWait)
		}
		if err != nil {
			c.problem(fmt.Sprintf("mqtt[%d].url", bi), fmt.Sprintf("%s: %v", b.Name, err),
				"check the url, the network, the credentials and the TLS settings")
			continue
		}
		// Inspect returns as soon as every topic brought a message.
		fmt.Fprintf(w, "mqtt %s: connected, listened %s on %s\n", b.Name, time.Since(t0).Round(10*time.Millisecond), plural(len(topics), "topic"))
		byTopic := map[string]mqtt.TopicInfo{}
		for _, in := range infos {
			byTopic[in.Topic] = in
		}
		for _, u := range uses {
			ref := u.ref.MQTT
			in := byTopic[ref.Topic]
			what, at := ref.Topic, u.path+".topic"
			if ref.Field != "" {
				what, at = ref.Topic+" field "+ref.Field, u.path+".field"
			}
			switch {
			case in.Refused != "":
				c.problem(u.path+".topic", fmt.Sprintf("the broker refused the subscription to %s (code %s)", ref.Topic, in.Refused),
					"the broker's ACL must let client "+b.ClientID+" read it")
			case !in.Got:
				fmt.Fprintf(w, "mqtt %s: %s %s: %s: no message within %s, not checked\n", b.Name, u.machine, u.signal, what, mqttWait)
			case len(bytes.TrimSpace(in.Payload)) == 0:
				// How a retained message is cleared: the agent skips it.
				fmt.Fprintf(w, "mqtt %s: %s %s: %s: an empty message (a retained one cleared?), not checked\n", b.Name, u.machine, u.signal, what)
			default:
				ts, err := mapping.CheckPayload(u.signal, ref.Field, ref.TimestampField, in.Payload, u.rollover, u.running...)
				if err != nil {
					var pe *mapping.PayloadError
					if errors.As(err, &pe) {
						if pe.Field != "" && pe.Field == ref.TimestampField {
							at = u.path + ".timestamp_field"
						}
						err = pe.Err
					}
					if errors.Is(err, mapping.ErrNoTime) {
						// The agent takes it at its receive time: a typo, or a
						// gateway that leaves the time out now and then.
						c.warning(u.path+".timestamp_field", fmt.Sprintf("%s: %v; the payload was %s", what, err, snippet(in.Payload)),
							"check timestamp_field (a dot path into the JSON)")
						continue
					}
					c.problem(at, fmt.Sprintf("%s: %v; the payload was %s", what, err, snippet(in.Payload)),
						"check field (a dot path into the JSON) and timestamp_field")
					continue
				}
				if off := ts.Sub(in.Received); !ts.IsZero() && !in.Retained && (off >= agent.SourceClockOff || off <= -agent.SourceClockOff) {
					// A live message: its time is its source clock's now
					// (a retained one may be old news).
					how := "ahead of"
					if off < 0 {
						how, off = "behind", -off
					}
					c.warning(u.path+".timestamp_field", fmt.Sprintf("%s: the time the message carries (%s) is %s %s this machine's clock: "+
						"the agent dates the machine's stops by it", what, ts.Format(time.RFC3339), off.Round(time.Minute), how),
						"set the source's clock; local time sent as UTC (with a Z) is off by whole hours")
				}
				fmt.Fprintf(w, "mqtt %s: %s %s: %s: OK (%s)\n", b.Name, u.machine, u.signal, what, snippet(in.Payload))
			}
		}
	}
	return c.result()
}

// snippet is a payload for a message line: quoted, at most 80 bytes.
func snippet(p []byte) string {
	if len(p) > 80 {
		return fmt.Sprintf("%q...", p[:77])
	}
	return fmt.Sprintf("%q", p)
}
