package connectors

import "testing"

func TestServerID(t *testing.T) {
	for in, want := range map[string]string{
		"opc.tcp://10.0.0.5:4840":       "opc.tcp://10.0.0.5:4840",
		"OPC.TCP://PLC-7.Plant:4840/":   "opc.tcp://plc-7.plant:4840",
		" opc.tcp://10.0.0.5:4840/UA/ ": "opc.tcp://10.0.0.5:4840/UA",
		"ssl://bot:s3cret@Broker:8883":  "ssl://broker:8883",
	} {
		if got := ServerID(in); got != want {
			t.Errorf("ServerID(%q) = %q, want %q", in, got, want)
		}
	}
	if ServerID("opc.tcp://plc-7:4840") == ServerID("opc.tcp://10.0.0.5:4840") {
		t.Error("a host name and an address are one server")
	}
}
