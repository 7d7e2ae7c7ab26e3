package console

import (
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"
)

// TopOptions shape connwatch top's view.
type TopOptions struct {
	Interval time.Duration // refresh; 0 means one second
	Color    bool          // failures in red
}

// TopView is connwatch top's live view of a Top on a terminal
// (bubbletea, on the alternate screen): one row per workload, refreshed
// every interval, sorted by a key the user picks; q, Esc or Ctrl-C quit
// and give the terminal back as it was.
type TopView struct {
	p    *tea.Program
	done chan struct{}
	err  error
	once sync.Once
}

// StartTopView shows top on out, reading keys from in, until the user
// quits or Stop is called.
func StartTopView(top *Top, in io.Reader, out io.Writer, o TopOptions) *TopView {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	m := topModel{top: top, o: o, width: DefaultWidth, height: 24}
	v := &TopView{done: make(chan struct{}),
		p: tea.NewProgram(m, tea.WithInput(in), tea.WithOutput(out), tea.WithoutSignalHandler())}
	go func() {
		defer close(v.done)
		_, v.err = v.p.Run()
	}()
	return v
}

// Done is closed when the view has ended and the terminal is restored.
func (v *TopView) Done() <-chan struct{} { return v.done }

// Stop ends the view (if the user has not) and waits until the terminal
// is restored.
func (v *TopView) Stop() error {
	v.once.Do(v.p.Quit)
	<-v.done
	return v.err
}

type tickMsg struct{}

type topModel struct {
	top           *Top
	o             TopOptions
	rows          []TopRow
	sort          SortKey
	width, height int
	refreshed     time.Time
}

func (m topModel) tick() tea.Cmd {
	return tea.Tick(m.o.Interval, func(time.Time) tea.Msg { return tickMsg{} })
}

func (m topModel) Init() tea.Cmd { return m.tick() }

func (m topModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tickMsg:
		m.rows = m.top.Snapshot()
		m.refreshed = time.Now()
		SortRows(m.rows, m.sort)
		return m, m.tick()
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case tea.KeyPressMsg:
		switch msg.String() {
		case "q", "esc", "ctrl+c":
			return m, tea.Quit
		case "c":
			m.sort = SortConnects
		case "f":
			m.sort = SortFailures
		case "a":
			m.sort = SortAccepts
		case "l":
			m.sort = SortLatency
		case "n":
			m.sort = SortName
		}
		SortRows(m.rows, m.sort)
	}
	return m, nil
}

var sortNames = [...]string{"connects/s", "failures/s", "accepts/s", "p99 latency", "name"}

// topColumns: title, width, right-aligned.
var topColumns = []struct {
	title string
	width int
	right bool
}{
	{"WORKLOAD", 28, false}, {"PID", 7, true}, {"CONN/s", 8, true}, {"FAIL/s", 8, true}, {"ACC/s", 8, true},
	{"P50", 8, true}, {"P99", 8, true}, {"TOTAL", 8, true}, {"TOP PEER", 0, false},
}

func (m topModel) View() tea.View {
	var b strings.Builder
	stamp := "--:--:--"
	if !m.refreshed.IsZero() {
		stamp = m.refreshed.Format("15:04:05")
	}
	title := "connwatch top  " + stamp + "  " + strconv.Itoa(len(m.rows)) + " workloads  sorted by " + sortNames[m.sort] +
		"   keys: c f a l n sort, q quit"
	b.WriteString(clip(title, m.width))
	b.WriteString("\n")
	cells := make([]string, len(topColumns))
	for i, c := range topColumns {
		cells[i] = c.title
	}
	header := m.line(cells)
	if m.o.Color {
		header = "\x1b[1m" + header + "\x1b[0m"
	}
	b.WriteString(header)
	for i, r := range m.rows {
		if i >= m.height-3 {
			break
		}
		peer := "-"
		if r.TopPeer.IsValid() {
			p := r.TopPeer.String()
			if r.TopPeer.Port() == 0 {
				p = r.TopPeer.Addr().String()
			}
			peer = printable(p) + " ×" + strconv.FormatUint(uint64(r.PeerCount), 10)
		}
		cells = []string{r.Workload, strconv.FormatUint(uint64(r.PID), 10), rate(r.Connects), rate(r.Failures), rate(r.Accepts),
			lat(r.P50), lat(r.P99), strconv.FormatUint(r.Total, 10), peer}
		l := m.line(cells)
		if m.o.Color && r.Failures > 0 {
			l = "\x1b[31m" + l + "\x1b[0m"
		}
		b.WriteString("\n")
		b.WriteString(l)
	}
	v := tea.NewView(b.String())
	v.AltScreen = true
	return v
}

// line lays cells out in topColumns, clipped to the terminal's width.
func (m topModel) line(cells []string) string {
	var b []byte
	for i, c := range topColumns {
		s := cells[i]
		if c.width > 0 && len([]rune(s)) > c.width {
			r := []rune(s)
			s = string(r[:c.width-1]) + "…"
		}
		n := len([]rune(s))
		if c.right {
			b = spaces(b, c.width-n)
		}
		b = append(b, s...)
		if !c.right {
			b = spaces(b, c.width-n)
		}
		if i < len(topColumns)-1 {
			b = append(b, ' ')
		}
	}
	return clip(string(trimRight(b)), m.width)
}

func clip(s string, width int) string {
	if r := []rune(s); width > 0 && len(r) > width {
		return string(r[:width])
	}
	return s
}

func rate(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func lat(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return latency(d)
}
