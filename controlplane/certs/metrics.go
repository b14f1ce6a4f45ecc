package certs

import (
	"encoding/hex"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	expiryDesc = prometheus.NewDesc("meshwarden_cert_expiry_seconds",
		"Seconds until the certificate expires (negative once expired), per leaf certificate and per trust root.",
		[]string{"kind", "name", "serial", "issuer"}, nil)
	renewalsDesc = prometheus.NewDesc("meshwarden_cert_renewals_total",
		"Certificates replaced by a renewal, per name.", []string{"name", "issuer"}, nil)
	failuresDesc = prometheus.NewDesc("meshwarden_cert_renewal_failures_total",
		"Failed attempts to issue or renew, per name.", []string{"name", "issuer"}, nil)
	alarmDesc = prometheus.NewDesc("meshwarden_cert_alarm",
		"1 while renewal keeps failing and expiry is near (the readiness check fails), else 0.", []string{"name", "issuer"}, nil)
)

// Describe implements prometheus.Collector.
func (m *Manager) Describe(ch chan<- *prometheus.Desc) {
	ch <- expiryDesc
	ch <- renewalsDesc
	ch <- failuresDesc
	ch <- alarmDesc
}

// Collect implements prometheus.Collector: the figures are computed at
// scrape time, so seconds-to-expiry is always current.
func (m *Manager) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	kind := m.opts.Issuer.Kind()
	m.mu.RLock()
	defer m.mu.RUnlock()
	for name, e := range m.leaves {
		if c := e.cert; c != nil {
			ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue,
				c.NotAfter().Sub(now).Seconds(), "leaf", name, c.Serial(), kind)
		}
		ch <- prometheus.MustNewConstMetric(renewalsDesc, prometheus.CounterValue, float64(e.renewals), name, kind)
		ch <- prometheus.MustNewConstMetric(failuresDesc, prometheus.CounterValue, float64(e.failTotal), name, kind)
		alarm := 0.0
		if m.alarmLocked(e, now) != "" {
			alarm = 1
		}
		ch <- prometheus.MustNewConstMetric(alarmDesc, prometheus.GaugeValue, alarm, name, kind)
	}
	for _, r := range m.roots {
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue,
			r.cert.NotAfter.Sub(now).Seconds(), "root", r.cert.Subject.CommonName,
			hex.EncodeToString(r.cert.SerialNumber.Bytes()), kind)
	}
}

var _ prometheus.Collector = (*Manager)(nil)
