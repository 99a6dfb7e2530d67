package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// rssSampleEvery is how often a child's memory is sampled from /proc.
const rssSampleEvery = 100 * time.Millisecond

// proc is a child process whose peak memory and CPU time are measured.
type proc struct {
	name  string
	cmd   *exec.Cmd
	start time.Time
	done  chan struct{}
	err   error // Wait's result, read after done is closed

	mu      sync.Mutex
	peakHWM int64 // highest VmHWM seen in /proc/<pid>/status, in bytes
	stopped bool  // SIGSTOP sent and no SIGCONT since
}

// procResult is what a finished child cost.
type procResult struct {
	Wall    time.Duration
	CPU     time.Duration // user + system
	PeakRSS int64         // bytes: the larger of the sampled VmHWM and the kernel's ru_maxrss
}

// startProc starts name with args, output appended to logPath (and, when tee is set, copied
// there too). The child is killed if we die.
func startProc(ctx context.Context, logPath string, tee io.Writer, env []string, name string, args ...string) (*proc, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// On cancellation ask politely first: a stream flushes what it holds.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var out io.Writer = io.Discard
	var logFile *os.File
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open log of %s: %w", name, err)
		}
		logFile, out = f, f
	}
	if tee != nil {
		out = io.MultiWriter(out, tee)
	}
	cmd.Stdout, cmd.Stderr = out, out
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		close(p.done)
	}()
	go p.sample()
	return p, nil
}

// sample polls VmHWM until the process exits: once it is a zombie /proc no longer shows it.
func (p *proc) sample() {
	t := time.NewTicker(rssSampleEvery)
	defer t.Stop()
	for {
		if hwm, err := readStatusKB(p.cmd.Process.Pid, "VmHWM"); err == nil {
			p.mu.Lock()
			p.peakHWM = max(p.peakHWM, hwm*1024)
			p.mu.Unlock()
		}
		select {
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

// pid returns the child's process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the child has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the child; a child that has exited is not an error.
func (p *proc) signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	p.mu.Lock()
	switch sig {
	case syscall.SIGSTOP:
		p.stopped = true
	case syscall.SIGCONT:
		p.stopped = false
	}
	p.mu.Unlock()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	return nil
}

// wait waits for the child to exit and returns its cost. A non-zero exit is an error that
// names the exit code.
func (p *proc) wait() (procResult, error) {
	<-p.done
	res := procResult{Wall: time.Since(p.start)}
	if st := p.cmd.ProcessState; st != nil {
		res.CPU = st.UserTime() + st.SystemTime()
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			res.PeakRSS = ru.Maxrss * 1024 // kilobytes on Linux
		}
	}
	p.mu.Lock()
	res.PeakRSS = max(res.PeakRSS, p.peakHWM)
	p.mu.Unlock()
	if p.err != nil {
		return res, fmt.Errorf("%s: %w", p.name, p.err)
	}
	return res, nil
}

// stop asks the child to stop (SIGTERM; SIGCONT first if it was stopped) and waits for it.
func (p *proc) stop(timeout time.Duration) (procResult, error) {
	p.mu.Lock()
	wasStopped := p.stopped
	p.mu.Unlock()
	if wasStopped {
		_ = p.signal(syscall.SIGCONT)
	}
	_ = p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.signal(syscall.SIGKILL)
	}
	return p.wait()
}

// readStatusKB reads a "Name:   123 kB" field of /proc/<pid>/status.
func readStatusKB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// clockTick is USER_HZ, the unit of /proc CPU times; it is 100 on every Linux we run on.
const clockTick = 100

// procCPU returns the user + system CPU time a process has used so far, from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStatCPU(string(data))
}

// parseProcStatCPU extracts utime + stime (fields 14 and 15) from a /proc/<pid>/stat line. The
// command name (field 2) may hold spaces and parentheses, so fields are counted after its last ')'.
func parseProcStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime is field 14 → f[11], stime field 15 → f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc stat: %d fields", len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc stat: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// cpuTimes is the machine's aggregate CPU counters from /proc/stat.
type cpuTimes struct{ busy, total int64 }

// readCPUTimes reads the "cpu" line of /proc/stat.
func readCPUTimes() (cpuTimes, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return parseCPULine(line)
}

func parseCPULine(line string) (cpuTimes, error) {
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("parse /proc/stat: unexpected first line %q", line)
	}
	var t cpuTimes
	for i, s := range f[1:] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("parse /proc/stat: %w", err)
		}
		// guest and guest_nice (fields 9, 10) are already counted in user and nice.
		if i >= 8 {
			break
		}
		t.total += v
		if i != 3 && i != 4 { // idle, iowait
			t.busy += v
		}
	}
	return t, nil
}

// busyShare is the fraction of machine CPU time spent busy between a and b.
func busyShare(a, b cpuTimes) float64 {
	if b.total <= a.total {
		return 0
	}
	return float64(b.busy-a.busy) / float64(b.total-a.total)
}
