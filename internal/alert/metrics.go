package alert

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the alerting Prometheus metrics. A nil *Metrics counts nothing.
type Metrics struct {
	Events     prometheus.Counter
	Skipped    prometheus.Counter
	LastSeq    prometheus.Gauge
	Fired      *prometheus.CounterVec
	Suppressed *prometheus.CounterVec
	Evicted    *prometheus.CounterVec
	Deliveries *prometheus.CounterVec
	Attempts   *prometheus.CounterVec
}

// Delivery results counted in Metrics.Deliveries.
const (
	ResultDelivered = "delivered" // accepted (2xx), or recorded as an ALERT event
	ResultFailed    = "failed"    // refused (4xx) or every attempt failed
	ResultDropped   = "dropped"   // the destination's queue was full
	ResultAbandoned = "abandoned" // still queued or in flight when Stop's timeout ran out
)

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Events: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgtrail_alert_events_total",
			Help: "Events evaluated by the alert rules."}),
		Skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgtrail_alert_events_skipped_total",
			Help: "Events not evaluated because they are older than skip_older_than."}),
		LastSeq: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgtrail_alert_last_seq",
			Help: "Seq of the last archived event the rules have seen (evaluated or skipped)."}),
		Fired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgtrail_alert_fired_total",
			Help: "Alerts raised, by rule."}, []string{"rule"}),
		Suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgtrail_alert_suppressed_total",
			Help: "Matches not alerted because the rule and key were cooling down, by rule."}, []string{"rule"}),
		Evicted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgtrail_alert_keys_evicted_total",
			Help: "Keys forgotten before their window or cooldown ended because the rule hit max_keys, by rule."}, []string{"rule"}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgtrail_alert_deliveries_total",
			Help: "Alerts per destination (webhook:NAME, or record for the ALERT event) by result: delivered, failed, dropped (queue full), abandoned (at stop)."},
			[]string{"destination", "result"}),
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgtrail_alert_delivery_attempts_total",
			Help: "Delivery attempts per destination, retries included."}, []string{"destination"}),
	}
	if reg != nil {
		reg.MustRegister(m.Events, m.Skipped, m.LastSeq, m.Fired, m.Suppressed, m.Evicted, m.Deliveries, m.Attempts)
	}
	return m
}

func (m *Metrics) evaluated() {
	if m != nil {
		m.Events.Inc()
	}
}

func (m *Metrics) seen(seq int64) {
	if m != nil {
		m.LastSeq.Set(float64(seq))
	}
}

func (m *Metrics) skipped() {
	if m != nil {
		m.Skipped.Inc()
	}
}

func (m *Metrics) fired(rule string) {
	if m != nil {
		m.Fired.WithLabelValues(rule).Inc()
	}
}

func (m *Metrics) suppressed(rule string) {
	if m != nil {
		m.Suppressed.WithLabelValues(rule).Inc()
	}
}

func (m *Metrics) evicted(rule string) {
	if m != nil {
		m.Evicted.WithLabelValues(rule).Inc()
	}
}

func (m *Metrics) delivery(dest, result string) {
	if m != nil {
		m.Deliveries.WithLabelValues(dest, result).Inc()
	}
}

func (m *Metrics) attempt(dest string) {
	if m != nil {
		m.Attempts.WithLabelValues(dest).Inc()
	}
}
