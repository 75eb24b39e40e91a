package agent

import (
	"fmt"
	"strings"
	"testing"

	"github.com/plantedge/plantedge/agent/config"
)

// A rejected reload of a file with many problems (one slip repeated down
// 715 machines) is said in status and in one log line: the first problems,
// and how many more `plantedge validate` shows. The whole list made status
// 1,445 lines long and its log record 135 KB, which journald (LineMax 48K)
// splits into several (the ot-audit probe). A short list is kept whole.
func TestRejectedReloadSaysTheFirstProblems(t *testing.T) {
	problems := func(n int) error {
		e := &config.Error{}
		for i := range n {
			e.Problems = append(e.Problems, config.Problem{File: "p.yaml", Line: 19 + 7*i, Column: 17,
				Path: fmt.Sprintf("machines[%d].good_count.rollover", i), Msg: "expected a whole number"})
		}
		return e
	}
	got := reloadErrorText(problems(715))
	lines := strings.Split(got, "\n")
	if len(lines) != maxReloadProblems+1 || !strings.HasPrefix(lines[0], "p.yaml:19:17: machines[0].good_count.rollover") ||
		lines[len(lines)-1] != "… and 705 more problems (plantedge validate shows every problem)" {
		t.Errorf("715 problems said as:\n%s", got)
	}
	if len(got) > 4096 {
		t.Errorf("715 problems said in %d bytes", len(got))
	}
	if short := problems(3); reloadErrorText(short) != short.Error() {
		t.Errorf("3 problems said as:\n%s", reloadErrorText(short))
	}
	if e := fmt.Errorf("sources: %w", problems(2)); reloadErrorText(e) != e.Error() {
		t.Errorf("another error said as %q", reloadErrorText(e))
	}
}
