package bench

import (
	"bufio"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// percentile returns the p-th percentile (0 < p <= 100) of xs by the nearest-rank method, and 0
// for no data (results are JSON, which has no NaN). xs is sorted in place.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	rank := int(math.Ceil(p / 100 * float64(len(xs))))
	return xs[min(max(rank, 1), len(xs))-1]
}

// mean returns the arithmetic mean of xs, 0 for no data.
func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// bucket is one cumulative bucket of a Prometheus histogram.
type bucket struct {
	le    float64
	count float64
}

// histogram is a Prometheus histogram read from the text exposition format.
type histogram struct {
	buckets []bucket // sorted by le, cumulative, the last one +Inf
	count   float64
	sum     float64
}

// quantile estimates the q-quantile (0..1) the way PromQL's histogram_quantile does: linear
// interpolation inside the bucket that holds it. It returns 0 without observations; a quantile
// in the +Inf bucket returns the highest finite bound.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 || len(h.buckets) == 0 {
		return 0
	}
	rank := q * h.count
	prevLE, prevCount := 0.0, 0.0
	for _, b := range h.buckets {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return prevLE
			}
			if b.count == prevCount {
				return b.le
			}
			return prevLE + (b.le-prevLE)*(rank-prevCount)/(b.count-prevCount)
		}
		prevLE, prevCount = b.le, b.count
	}
	return prevLE
}

// metrics holds the samples of a Prometheus text exposition that the harness reads.
type metrics struct {
	values     map[string]float64 // unlabelled samples by name
	histograms map[string]*histogram
}

// parseMetrics reads the Prometheus text format: unlabelled samples, and histograms (their
// _bucket, _sum and _count series). Other labelled samples are ignored.
func parseMetrics(text string) (metrics, error) {
	m := metrics{values: map[string]float64{}, histograms: map[string]*histogram{}}
	hist := func(name string) *histogram {
		h := m.histograms[name]
		if h == nil {
			h = &histogram{}
			m.histograms[name] = h
		}
		return h
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		series, valueText, ok := cutLast(line, " ")
		if !ok {
			return m, fmt.Errorf("parse metrics: line %q has no value", line)
		}
		v, err := strconv.ParseFloat(valueText, 64)
		if err != nil {
			return m, fmt.Errorf("parse metrics: line %q: %w", line, err)
		}
		name, labels, _ := strings.Cut(series, "{")
		switch {
		case strings.HasSuffix(name, "_bucket") && labels != "":
			le, ok := labelValue(labels, "le")
			if !ok {
				continue
			}
			bound, err := strconv.ParseFloat(le, 64)
			if err != nil {
				return m, fmt.Errorf("parse metrics: bucket bound %q: %w", le, err)
			}
			h := hist(strings.TrimSuffix(name, "_bucket"))
			h.buckets = append(h.buckets, bucket{le: bound, count: v})
		case labels != "":
			// Labelled series other than buckets are not needed.
		case strings.HasSuffix(name, "_sum") && m.histograms[strings.TrimSuffix(name, "_sum")] != nil:
			hist(strings.TrimSuffix(name, "_sum")).sum = v
		case strings.HasSuffix(name, "_count") && m.histograms[strings.TrimSuffix(name, "_count")] != nil:
			hist(strings.TrimSuffix(name, "_count")).count = v
		default:
			m.values[name] = v
		}
	}
	for _, h := range m.histograms {
		slices.SortFunc(h.buckets, func(a, b bucket) int {
			switch {
			case a.le < b.le:
				return -1
			case a.le > b.le:
				return 1
			}
			return 0
		})
	}
	return m, sc.Err()
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// labelValue finds name="value" in the inside of a label set ({...} with or without braces).
func labelValue(labels, name string) (string, bool) {
	labels = strings.TrimSuffix(labels, "}")
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && k == name {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
}
