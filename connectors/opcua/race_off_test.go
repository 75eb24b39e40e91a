//go:build !race

package opcua

// raceEnabled: the tests run with the race detector.
const raceEnabled = false
