package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

// kernelRun is the outcome for one kernel.
type kernelRun struct {
	Kernel kernel
	Guest  *guestRun
	Checks []checkResult
	Tests  []string
	Notes  []string
	// Skipped says which tests of the test binaries this boot skipped,
	// and why.
	Skipped []string
}

func (r *kernelRun) ok() bool {
	for _, c := range r.Checks {
		if c.failed() {
			return false
		}
	}
	return true
}

// name is the kernel release the guest reported, which says more than
// the series asked for.
func (r *kernelRun) name() string {
	if i := r.Guest.Boot.Info; i != nil && i.Release != "" {
		return i.Release
	}
	return r.Kernel.Label
}

func (r *kernelRun) counts() (passed, failed, skipped int) {
	for _, c := range r.Checks {
		switch {
		case c.Skipped != "":
			skipped++
		case c.Err != "":
			failed++
		default:
			passed++
		}
	}
	return
}

func summaryLine(r *kernelRun) string {
	verdict := "PASS"
	if !r.ok() {
		verdict = "FAIL"
	}
	var parts []string
	if rep := r.Guest.reports["touched"]; rep != nil {
		parts = append(parts, "copies by "+shortMethod(rep.Methods["copies"]))
		if w, err := rep.process("writer"); err == nil {
			parts = append(parts, "writer copies "+fmtp(w.Copies))
		}
		if rd, err := rep.process("reader"); err == nil {
			parts = append(parts, "reader copies "+fmtp(rd.Copies))
		}
	} else {
		parts = append(parts, r.noReport())
	}
	parts = append(parts, r.countsText("%d checks passed", ", %d failed"), fmt.Sprintf("%d test binaries%s", len(r.Tests), r.testCounts()))
	if n := len(r.Guest.Guests); n > 0 {
		parts = append(parts, fmt.Sprintf("%d guests, longest %.0f s", n, r.Guest.Boot.Elapsed.Seconds()))
	} else {
		parts = append(parts, fmt.Sprintf("%.0f s", r.Guest.Boot.Elapsed.Seconds()))
	}
	return fmt.Sprintf("%s: %s (%s)", r.name(), verdict, strings.Join(parts, ", "))
}

func (r *kernelRun) testCounts() string {
	var total testCounts
	for _, t := range r.Tests {
		if res := r.Guest.results[t]; res != nil {
			c := countTests(res.Stdout)
			total.Pass += c.Pass
			total.Skip += c.Skip
			total.Fail += c.Fail
		}
	}
	if len(r.Tests) == 0 {
		return ""
	}
	return fmt.Sprintf(" [tests: %d pass, %d skip, %d fail]", total.Pass, total.Skip, total.Fail)
}

// noReport says why there is no report of the touched run.
func (r *kernelRun) noReport() string {
	switch {
	case r.Guest.results["touched"] != nil:
		return "cowtrace failed"
	case slices.ContainsFunc(r.Guest.Manifest.Commands, func(c guest.Command) bool { return c.Name == "touched" }):
		return "no result from cowtrace"
	default:
		return "cowtrace not built"
	}
}

// testLines gives one line per test binary: its verdict counts and time.
func (r *kernelRun) testLines() []string {
	var out []string
	for _, t := range r.Tests {
		res := r.Guest.results[t]
		if res == nil {
			out = append(out, t+": no result")
			continue
		}
		c := countTests(res.Stdout)
		verdict := "ok"
		if res.ExitCode != 0 || res.Signaled != "" || res.TimedOut || res.Err != "" {
			verdict = "FAIL"
		}
		out = append(out, fmt.Sprintf("%s: %s, %d pass, %d skip, %d fail (%.1f s)", t, verdict, c.Pass, c.Skip, c.Fail, res.Duration.Seconds()))
	}
	return out
}

// shortMethod names a method of a report's methods in a word or two.
func shortMethod(m string) string {
	switch {
	case m == "":
		return "not measured"
	case strings.HasPrefix(m, "kprobe:"):
		return "kprobe " + strings.TrimPrefix(m, "kprobe:")
	case m == cow.FaultAddrMethod:
		return "by address"
	case strings.HasPrefix(m, "tracepoint:"):
		return "tracepoint"
	case strings.HasPrefix(m, "callchain:"):
		return "call chain"
	}
	kind, _, _ := strings.Cut(m, ":")
	return kind
}

// resultsTable is the markdown table of every kernel: the touched run's
// measures, each with the method that took it, the matrix and the checks.
func resultsTable(runs []*kernelRun) string {
	var b strings.Builder
	b.WriteString("| kernel | boot | THP | writer faults in region | writer wp faults | writer copies | reader copies | inferred copies (writer) | do_wp_page (writer) | matrix | checks |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range runs {
		boot := r.Kernel.Label
		if r.Kernel.Append != "" {
			boot += " `" + r.Kernel.Append + "`"
		}
		thp := "-"
		if i := r.Guest.Boot.Info; i != nil {
			thp = map[bool]string{true: "yes", false: "no"}[i.THP]
		}
		row := []string{r.name(), boot, thp, "-", "-", "-", "-", "-", "-", r.Guest.matrixCell(), r.checksCell()}
		if rep := r.Guest.reports["touched"]; rep != nil {
			cell := func(v, key string) string { return v + " (" + shortMethod(rep.Methods[key]) + ")" }
			if w, err := rep.process("writer"); err == nil {
				in := w.InRegion["wp"] + w.InRegion["write_not_present"] + w.InRegion["read"] + w.InRegion["exec"] + w.InRegion["unclassified"]
				row[3] = cell(fmt.Sprint(in), "in_region")
				wp := "-"
				if rep.Methods["wp_faults"] != "" {
					wp = fmt.Sprint(w.WPFaults)
				}
				row[4] = cell(wp, "wp_faults")
				row[5] = cell(fmtp(w.Copies), "copies")
				row[7] = cell(fmtp(w.InferredCopies), "inferred_copies")
				if n, ok := w.Probes["do_wp_page"]; ok {
					row[8] = fmt.Sprint(n)
				}
			}
			if rd, err := rep.process("reader"); err == nil {
				row[6] = cell(fmtp(rd.Copies), "copies")
			}
		} else {
			row[3] = r.noReport()
		}
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	return b.String()
}

func (r *kernelRun) checksCell() string { return r.countsText("%d passed", ", **%d failed**") }

// countsText is how many checks passed, failed and were skipped, the last
// two only when there are any: passedFmt and failedFmt write the first two
// as the summary line and the table each want them.
func (r *kernelRun) countsText(passedFmt, failedFmt string) string {
	passed, failed, skipped := r.counts()
	out := fmt.Sprintf(passedFmt, passed)
	if failed > 0 {
		out += fmt.Sprintf(failedFmt, failed)
	}
	if skipped > 0 {
		out += fmt.Sprintf(", %d skipped", skipped)
	}
	return out
}

// matrixCell summarises the matrix for the table.
func (g *guestRun) matrixCell() string {
	m, err := g.matrix()
	if err != nil {
		return "-"
	}
	if g.Expect.Copies == methodNone {
		decided, held, undecided := countersOnlyExpectations(m)
		return fmt.Sprintf("%d/%d decidable expectations held (%d need copies or fault classes)", held, decided, undecided)
	}
	held, na := 0, 0
	for _, s := range m.Scenarios {
		switch {
		case s.Run == nil && s.NotApplicable != "":
			na++
		case s.Held:
			held++
		}
	}
	out := fmt.Sprintf("%d/%d held", held, len(m.Scenarios)-na)
	if na > 0 {
		out += fmt.Sprintf(", %d not applicable", na)
	}
	return out
}

// printFailure shows a failing guest's own output: the failed checks, the
// output of the commands they name, and the tail of the console.
func printFailure(w io.Writer, r *kernelRun) {
	fmt.Fprintf(w, "==== %s (%s): FAIL\n", r.name(), r.Kernel.Vmlinuz)
	shown := map[string]bool{}
	noResult := 0
	for _, c := range r.Checks {
		if !c.failed() {
			continue
		}
		if strings.HasPrefix(c.Err, errNoResult.Error()) {
			noResult++
			continue
		}
		fmt.Fprintf(w, "--- FAIL: %s\n%s\n", c.Name, indent(c.Err))
		if c.Cmd == "" || shown[c.Cmd] {
			continue
		}
		shown[c.Cmd] = true
		if ps := r.Guest.parts[c.Cmd]; ps != nil {
			// Each part as it ran, with its own command line.
			for _, res := range ps {
				if res != nil {
					printCommand(w, res)
				}
			}
		} else if res := r.Guest.results[c.Cmd]; res != nil {
			printCommand(w, res)
		}
	}
	if noResult > 0 {
		fmt.Fprintf(w, "--- FAIL: %d more checks: the guest never reported their commands\n", noResult)
	}
	if len(r.Guest.Guests) == 0 {
		fmt.Fprintf(w, "---- console (last 40 lines)\n%s\n", indent(tail(r.Guest.Boot.Console, 40)))
		return
	}
	for _, s := range r.Guest.Guests {
		fmt.Fprintf(w, "---- %s console (last 40 lines)\n%s\n", s.label(), indent(tail(s.Boot.Console, 40)))
	}
}

func printCommand(w io.Writer, res *guest.Result) {
	fmt.Fprintf(w, "---- %s: %s (%s, %v)\n", res.Name, strings.Join(res.Argv, " "), exitStatus(res), res.Duration.Round(time.Millisecond))
	if res.Err != "" {
		fmt.Fprintf(w, "guest error: %s\n", res.Err)
	}
	fmt.Fprintf(w, "---- stdout (last 200 lines)\n%s\n", indent(tail(res.Stdout, 200)))
	fmt.Fprintf(w, "---- stderr (last 200 lines)\n%s\n", indent(tail(res.Stderr, 200)))
}

func indent(s string) string {
	if s == "" {
		return "    (empty)"
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

type jsonRun struct {
	Kernel    string          `json:"kernel"`
	Series    string          `json:"series"`
	Package   string          `json:"package,omitempty"`
	Vmlinuz   string          `json:"vmlinuz"`
	Pass      bool            `json:"pass"`
	ElapsedS  float64         `json:"elapsed_s"`
	TimedOut  bool            `json:"timed_out,omitempty"`
	Info      *guest.Info     `json:"info"`
	Checks    []checkResult   `json:"checks"`
	Results   []*guest.Result `json:"results"`
	Notes     []string        `json:"notes,omitempty"`
	FrameErrs []string        `json:"frame_errors,omitempty"`
	// Guests are the guests the kernel's commands were spread over;
	// elapsed_s is the longest of them, results are all of theirs.
	Guests []jsonGuest `json:"guests,omitempty"`
}

type jsonGuest struct {
	Index     int      `json:"index"`
	ElapsedS  float64  `json:"elapsed_s"`
	TimedOut  bool     `json:"timed_out,omitempty"`
	Commands  []string `json:"commands"`
	FrameErrs []string `json:"frame_errors,omitempty"`
}

func writeJSON(file string, runs []*kernelRun) error {
	var out []jsonRun
	for _, r := range runs {
		b := r.Guest.Boot
		out = append(out, jsonRun{
			Kernel: r.name(), Series: r.Kernel.Label, Package: r.Kernel.Package, Vmlinuz: r.Kernel.Vmlinuz,
			Pass: r.ok(), ElapsedS: b.Elapsed.Seconds(), TimedOut: b.TimedOut, Info: b.Info,
			Checks: r.Checks, Results: b.Results, Notes: slices.Concat(r.Notes, r.Skipped), FrameErrs: b.Frames,
		})
		for _, s := range r.Guest.Guests {
			jg := jsonGuest{Index: s.Index, ElapsedS: s.Boot.Elapsed.Seconds(), TimedOut: s.Boot.TimedOut, FrameErrs: s.Boot.Frames}
			for _, c := range s.Manifest.Commands {
				jg.Commands = append(jg.Commands, c.Name)
			}
			out[len(out)-1].Guests = append(out[len(out)-1].Guests, jg)
		}
	}
	js, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(file, append(js, '\n'), 0o644)
}

const (
	readmeBegin = "<!-- vmtest:begin -->"
	readmeEnd   = "<!-- vmtest:end -->"
)

func readmeSection(table string, when time.Time, command string, pass bool) string {
	verdict := "every check passed"
	if !pass {
		verdict = "some checks FAILED"
	}
	return fmt.Sprintf("Measured %s with `%s` (%s):\n\n%s", when.Format("2006-01-02"), strings.TrimSpace(command), verdict, table)
}

// replaceSection puts body between the begin and end marker lines of doc,
// leaving the markers and everything outside them as they were.
func replaceSection(doc, body string) (string, error) {
	lines := strings.SplitAfter(doc, "\n")
	begin, end := -1, -1
	for i, l := range lines {
		switch strings.TrimSpace(l) {
		case readmeBegin:
			if begin >= 0 {
				return "", errors.New("two " + readmeBegin + " lines")
			}
			begin = i
		case readmeEnd:
			if end >= 0 {
				return "", errors.New("two " + readmeEnd + " lines")
			}
			end = i
		}
	}
	if begin < 0 || end < 0 {
		return "", fmt.Errorf("no %s ... %s lines to replace between", readmeBegin, readmeEnd)
	}
	if end < begin {
		return "", fmt.Errorf("%s comes before %s", readmeEnd, readmeBegin)
	}
	if !strings.HasSuffix(lines[begin], "\n") {
		return "", errors.New(readmeBegin + " is the last line")
	}
	body = strings.TrimRight(body, "\n") + "\n"
	var b strings.Builder
	for _, l := range lines[:begin+1] {
		b.WriteString(l)
	}
	b.WriteString(body)
	for _, l := range lines[end:] {
		b.WriteString(l)
	}
	return b.String(), nil
}

func replaceReadmeSection(file, body string) error {
	st, err := os.Stat(file)
	if err != nil {
		return err
	}
	doc, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	out, err := replaceSection(string(doc), body)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return os.WriteFile(file, []byte(out), st.Mode().Perm())
}
