package metricdoc

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestNamesAndMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "README.md")
	doc := "`meshwarden_x_{a_total,b}`, `meshwarden_y_total{reason}`, `meshwarden_w_{f,c}_total`,\n" +
		"`meshwarden_y_total{reason=\"z\"}` and the family `meshwarden_k_`."
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	names, err := Names(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"meshwarden_w_c_total", "meshwarden_w_f_total", "meshwarden_x_a_total", "meshwarden_x_b", "meshwarden_y_total"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("Names = %v, want %v", names, want)
	}
	reg := prometheus.NewRegistry()
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshwarden_y_total"}, []string{"reason"})
	reg.MustRegister(vec, prometheus.NewCounter(prometheus.CounterOpts{Name: "meshwarden_x_b"}))
	miss, err := Missing(reg, names, map[string]string{"meshwarden_w_c_total": "test"})
	if err != nil {
		t.Fatal(err)
	}
	// A vector with no series yet is missing.
	if want := []string{"meshwarden_w_f_total", "meshwarden_x_a_total", "meshwarden_y_total"}; !reflect.DeepEqual(miss, want) {
		t.Fatalf("Missing = %v, want %v", miss, want)
	}
}
