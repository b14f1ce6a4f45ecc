package tracectx

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
)

const (
	validTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tidHex  = "4bf92f3577b34da6a3ce929d0e0e4736"
	sidHex  = "00f067aa0ba902b7"
)

// The cases follow the W3C Trace Context level 1 rules for traceparent.
func TestParseTraceparent(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		err     error
		sampled bool
		flags   byte
	}{
		{"spec example sampled", validTP, nil, true, 0x01},
		{"not sampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", nil, false, 0x00},
		{"unknown flags kept for version 00", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09", nil, true, 0x09},
		{"future version parsed by its 00 prefix", "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-the-future", nil, true, 0x01},
		{"future version exact length", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", nil, false, 0},
		{"future version without dash after flags", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00x", ErrMalformed, false, 0},
		{"version ff is invalid", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ErrVersion, false, 0},
		{"version 00 longer than 55", validTP + "-00", ErrMalformed, false, 0},
		{"too short", validTP[:54], ErrMalformed, false, 0},
		{"empty", "", ErrMalformed, false, 0},
		{"upper-case hex", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", ErrMalformed, false, 0},
		{"upper-case version", "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ErrMalformed, false, 0},
		{"all-zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", ErrZeroID, false, 0},
		{"all-zero parent id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ErrZeroID, false, 0},
		{"wrong separator", "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ErrMalformed, false, 0},
		{"non-hex in parent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01", ErrMalformed, false, 0},
		{"non-hex flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", ErrMalformed, false, 0},
		{"leading space", " " + validTP[:54], ErrMalformed, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := ParseTraceparent(tt.in)
			if err != tt.err {
				t.Fatalf("ParseTraceparent(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			if err != nil {
				return
			}
			if sc.TraceID.String() != tidHex || sc.SpanID.String() != sidHex {
				t.Errorf("ids = %s %s, want %s %s", sc.TraceID, sc.SpanID, tidHex, sidHex)
			}
			if sc.Sampled() != tt.sampled || sc.Flags != tt.flags {
				t.Errorf("flags = %02x sampled %v, want %02x %v", sc.Flags, sc.Sampled(), tt.flags, tt.sampled)
			}
		})
	}
}

func TestTraceparentRoundTripAndNewIDs(t *testing.T) {
	tid, err := NewTraceID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := NewSpanID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sc := SpanContext{TraceID: tid, SpanID: sid, Flags: FlagSampled}
	s := FormatTraceparent(sc)
	if len(s) != 55 || !strings.HasPrefix(s, "00-") || !strings.HasSuffix(s, "-01") {
		t.Fatalf("FormatTraceparent = %q", s)
	}
	got, err := ParseTraceparent(s)
	if err != nil || got != sc {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, sc)
	}
	// A reader of zeros then non-zeros must not yield an all-zero id.
	r := bytes.NewReader(append(make([]byte, 16), bytes.Repeat([]byte{7}, 16)...))
	tid2, err := NewTraceID(r)
	if err != nil || !tid2.IsValid() {
		t.Fatalf("NewTraceID over zeros = %v, %v", tid2, err)
	}
}

// The cases follow the W3C tracestate grammar and limits.
func TestParseTracestate(t *testing.T) {
	var thirtyTwo, thirtyThree []string
	for i := 0; i < 33; i++ {
		m := "k" + strings.Repeat("a", i) + "=v"
		if i < 32 {
			thirtyTwo = append(thirtyTwo, m)
		}
		thirtyThree = append(thirtyThree, m)
	}
	tests := []struct {
		name string
		in   []string
		want string // "" with ok=false means invalid
		ok   bool
	}{
		{"spec example", []string{"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"}, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", true},
		{"OWS and empty members", []string{" rojo=1 ,\t, congo=2\t"}, "rojo=1,congo=2", true},
		{"two header lines", []string{"rojo=1", "congo=2"}, "rojo=1,congo=2", true},
		{"multi-tenant key", []string{"fw529a3039@dt=abc"}, "fw529a3039@dt=abc", true},
		{"tenant starts with digit", []string{"1tenant@sys=abc"}, "1tenant@sys=abc", true},
		{"key chars", []string{"a_-*/9=x"}, "a_-*/9=x", true},
		{"value with inner space", []string{"a=x y"}, "a=x y", true},
		{"32 members", []string{strings.Join(thirtyTwo, ",")}, strings.Join(thirtyTwo, ","), true},
		{"33 members", []string{strings.Join(thirtyThree, ",")}, "", false},
		{"upper-case key", []string{"Rojo=1"}, "", false},
		{"key starts with digit", []string{"1rojo=1"}, "", false},
		{"system id too long", []string{"t@abcdefghijklmno=1"}, "", false},
		{"system id starts with digit", []string{"t@1sys=1"}, "", false},
		{"key too long", []string{"a" + strings.Repeat("b", 256) + "=1"}, "", false},
		{"value with =", []string{"a=b=c"}, "", false},
		{"value ends with space", []string{"a=b \x00"}, "", false},
		{"empty value", []string{"a="}, "", false},
		{"value too long", []string{"a=" + strings.Repeat("v", 257)}, "", false},
		{"no equals", []string{"rojo"}, "", false},
		{"duplicate key keeps the first", []string{"a=1,a=2"}, "a=1", true},
		{"duplicate key across header lines", []string{"foo=1", "foo=1,bar=2"}, "foo=1,bar=2", true},
		{"32 members over two lines", []string{strings.Join(thirtyTwo[:16], ","), strings.Join(thirtyTwo[16:], ",")}, strings.Join(thirtyTwo, ","), true},
		{"33 members over two lines", []string{strings.Join(thirtyThree[:16], ","), strings.Join(thirtyThree[16:], ",")}, "", false},
		{"simple key of 256", []string{"a" + strings.Repeat("b", 255) + "=1"}, "a" + strings.Repeat("b", 255) + "=1", true},
		{"tenant of 241 at system of 14", []string{"t" + strings.Repeat("x", 240) + "@s" + strings.Repeat("y", 13) + "=1"}, "t" + strings.Repeat("x", 240) + "@s" + strings.Repeat("y", 13) + "=1", true},
		{"tenant of 242", []string{"t" + strings.Repeat("x", 241) + "@s=1"}, "", false},
		{"non-ascii value", []string{"a=é"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := ParseTracestate(tt.in...)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseTracestate(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if tt.ok && ts.String() != tt.want {
				t.Errorf("String() = %q, want %q", ts.String(), tt.want)
			}
			if !tt.ok && len(ts.Members) != 0 {
				t.Errorf("invalid tracestate kept %d members", len(ts.Members))
			}
		})
	}
}

func TestTracestatePut(t *testing.T) {
	ts, err := ParseTracestate("rojo=1,congo=2")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Put("congo", "3"); err != nil {
		t.Fatal(err)
	}
	if got := ts.String(); got != "congo=3,rojo=1" {
		t.Errorf("after Put = %q, want congo=3,rojo=1", got)
	}
	if err := ts.Put("Bad", "x"); err == nil {
		t.Error("Put accepted an upper-case key")
	}
	for i := 0; i < 40; i++ {
		_ = ts.Put("k"+strings.Repeat("x", i), "v")
	}
	if len(ts.Members) != MaxTracestateMembers {
		t.Errorf("after 42 puts len = %d, want %d", len(ts.Members), MaxTracestateMembers)
	}
}

// The cases follow the W3C Baggage grammar and limits.
func TestParseBaggage(t *testing.T) {
	many := make([]string, 200)
	for i := range many {
		many[i] = "k" + strings.Repeat("x", i%50) + string(rune('a'+i%26)) + strings.Repeat("y", i/26) + "=1"
	}
	big := "a=" + strings.Repeat("v", 8000) + ",b=" + strings.Repeat("w", 300)
	tests := []struct {
		name    string
		in      string
		want    string
		dropped int
	}{
		{"spec example", "key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue",
			"key1=value1;property1;property2,key2 = value2,key3=value3; propertyKey=propertyValue", 0},
		{"percent-encoded value", "userId=alice,serverNode=DF%2028,isProduction=false", "userId=alice,serverNode=DF%2028,isProduction=false", 0},
		{"invalid member dropped, rest kept", "a=1,b c=2,d=3", "a=1,d=3", 1},
		{"bad percent escape dropped", "a=%zz,b=2", "b=2", 1},
		{"member without equals dropped", "novalue,b=2", "b=2", 1},
		{"duplicate key keeps the first", "a=1,a=2", "a=1", 1},
		{"empty members skipped", "a=1,,  ,b=2", "a=1,b=2", 0},
		{"over 8192 bytes drops from the end", big, "a=" + strings.Repeat("v", 8000), 1},
		{"empty value allowed", "a=", "a=", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bg := ParseBaggage(tt.in)
			if got := bg.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if bg.Dropped != tt.dropped {
				t.Errorf("Dropped = %d, want %d", bg.Dropped, tt.dropped)
			}
		})
	}
	t.Run("over 180 members", func(t *testing.T) {
		bg := ParseBaggage(strings.Join(many, ","))
		if bg.Len() != MaxBaggageMembers || bg.Dropped != 20 {
			t.Errorf("Len = %d Dropped = %d, want 180 and 20", bg.Len(), bg.Dropped)
		}
	})
}

func TestBaggageSetGetDelete(t *testing.T) {
	bg := ParseBaggage("userId=alice;p=1,mw-dye=blue,serverNode=DF%2028")
	if v, ok := bg.Get("serverNode"); !ok || v != "DF 28" {
		t.Errorf("Get(serverNode) = %q %v, want \"DF 28\"", v, ok)
	}
	if !bg.Set("mw-dye", "canary") {
		t.Fatal("Set refused a valid key")
	}
	if got, want := bg.String(), "mw-dye=canary,userId=alice;p=1,serverNode=DF%2028"; got != want {
		t.Errorf("after Set = %q, want %q", got, want)
	}
	bg.Set("note", "a,b;c d%")
	if v, _ := bg.Get("note"); v != "a,b;c d%" {
		t.Errorf("encoded round trip = %q", v)
	}
	if v, ok := BaggageValue(bg.String(), "note"); !ok || v != "a,b;c d%" {
		t.Errorf("BaggageValue = %q %v", v, ok)
	}
	if bg.Set("bad key", "x") {
		t.Error("Set accepted a key with a space")
	}
	if bg.Set("huge", strings.Repeat(" ", MaxBaggageBytes/3+1)) {
		t.Error("Set accepted a member longer than 8192 bytes once encoded")
	}
	if !bg.Delete("mw-dye") || bg.Delete("mw-dye") {
		t.Error("Delete did not remove exactly once")
	}
	if _, ok := bg.Get("mw-dye"); ok {
		t.Error("deleted member still present")
	}
	// Set keeps the limits by dropping from the end, never the new member.
	full := ParseBaggage("a=" + strings.Repeat("v", 8190))
	full.Set("mw-dye", "canary")
	if full.String() != "mw-dye=canary" || full.Dropped != 1 {
		t.Errorf("Set over the byte limit = %q dropped %d", full.String(), full.Dropped)
	}
}

func TestB3(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		err     error
		tid     string
		sampled bool
		debug   bool
	}{
		{"full", tidHex + "-" + sidHex + "-1-" + sidHex, nil, tidHex, true, false},
		{"no sampling", tidHex + "-" + sidHex, nil, tidHex, false, false},
		{"64-bit trace id", "a3ce929d0e0e4736-" + sidHex + "-0", nil, "0000000000000000a3ce929d0e0e4736", false, false},
		{"debug", tidHex + "-" + sidHex + "-d", nil, tidHex, true, true},
		{"sampling only", "0", ErrZeroID, "", false, false},
		{"bad sampling", tidHex + "-" + sidHex + "-x", ErrMalformed, "", false, false},
		{"short span", tidHex + "-00f067aa", ErrMalformed, "", false, false},
		{"zero ids", "00000000000000000000000000000000-0000000000000000-1", ErrZeroID, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseB3Single(tt.in)
			if err != tt.err {
				t.Fatalf("ParseB3Single(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			if err != nil {
				return
			}
			if b.TraceID.String() != tt.tid || b.Sampled() != tt.sampled || b.Debug != tt.debug {
				t.Errorf("got %s sampled %v debug %v", b.TraceID, b.Sampled(), b.Debug)
			}
		})
	}
	t.Run("multi", func(t *testing.T) {
		h := map[string]string{B3TraceIDHeader: tidHex, B3SpanIDHeader: sidHex, B3SampledHeader: "true"}
		b, err := ParseB3Multi(func(k string) string { return h[k] })
		if err != nil || !b.Sampled() || b.TraceID.String() != tidHex || b.SpanID.String() != sidHex {
			t.Fatalf("ParseB3Multi = %+v, %v", b, err)
		}
		h[B3SampledHeader] = "0"
		h[B3FlagsHeader] = "1"
		if b, _ := ParseB3Multi(func(k string) string { return h[k] }); !b.Debug || !b.Sampled() {
			t.Errorf("X-B3-Flags: 1 did not force sampling: %+v", b)
		}
		delete(h, B3SpanIDHeader)
		if _, err := ParseB3Multi(func(k string) string { return h[k] }); err != ErrMalformed {
			t.Errorf("missing span id: err = %v, want ErrMalformed", err)
		}
	})
	t.Run("format", func(t *testing.T) {
		sc, _ := ParseTraceparent(validTP)
		if got := string(AppendB3Single(nil, sc)); got != tidHex+"-"+sidHex+"-1" {
			t.Errorf("AppendB3Single = %q", got)
		}
	})
}

func FuzzParseTraceparent(f *testing.F) {
	f.Add(validTP)
	f.Add("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-x")
	f.Add("ff-")
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := ParseTraceparent(s)
		if err != nil {
			return
		}
		if !sc.IsValid() {
			t.Fatalf("accepted zero ids from %q", s)
		}
		again, err := ParseTraceparent(FormatTraceparent(sc))
		if err != nil || again != sc {
			t.Fatalf("re-parse of %q: %+v %v", s, again, err)
		}
	})
}

func FuzzParseTracestate(f *testing.F) {
	f.Add("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
	f.Add("a@b=c, ,d=e")
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := ParseTracestate(s)
		if err != nil {
			return
		}
		if len(ts.Members) > MaxTracestateMembers {
			t.Fatalf("%d members", len(ts.Members))
		}
		again, err := ParseTracestate(ts.String())
		if err != nil || again.String() != ts.String() {
			t.Fatalf("re-parse of %q: %q %v", ts.String(), again.String(), err)
		}
	})
}

func FuzzParseBaggage(f *testing.F) {
	f.Add("key1=value1;property1;property2, key2 = value2", "mw-dye", "canary")
	f.Add("a=%20,b", "a", "x y")
	f.Fuzz(func(t *testing.T, s string, k, v string) {
		if v1, ok1, v2, ok2 := BaggageValue2(s, k, "mw-dye"); true {
			w1, wok1 := BaggageValue(s, k)
			w2, wok2 := BaggageValue(s, "mw-dye")
			if v1 != w1 || ok1 != wok1 || v2 != w2 || ok2 != wok2 {
				t.Fatalf("BaggageValue2(%q, %q) disagrees with BaggageValue", s, k)
			}
		}
		bg := ParseBaggage(s)
		if clean := BaggageIsClean(s); clean != (bg.Dropped == 0) {
			t.Fatalf("BaggageIsClean(%q) = %v, ParseBaggage dropped %d", s, clean, bg.Dropped)
		}
		out := bg.String()
		if bg.Len() > MaxBaggageMembers || len(out) > MaxBaggageBytes {
			t.Fatalf("limits broken: %d members, %d bytes", bg.Len(), len(out))
		}
		again := ParseBaggage(out)
		if again.String() != out || again.Dropped != 0 {
			t.Fatalf("re-parse of %q: %q dropped %d", out, again.String(), again.Dropped)
		}
		if bg.Set(k, v) {
			if got, ok := bg.Get(k); !ok || got != v {
				t.Fatalf("Set/Get(%q) = %q %v, want %q", k, got, ok, v)
			}
			if bg.Len() > MaxBaggageMembers || len(bg.String()) > MaxBaggageBytes {
				t.Fatalf("Set broke the limits")
			}
			if r := ParseBaggage(bg.String()); r.Dropped != 0 {
				t.Fatalf("Set produced an unparsable member: %q", bg.String())
			}
		}
	})
}

func FuzzParseB3(f *testing.F) {
	f.Add(tidHex + "-" + sidHex + "-1-" + sidHex)
	f.Add("d")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseB3Single(s)
		if err == nil && !b.IsValid() {
			t.Fatalf("accepted zero ids from %q", s)
		}
	})
}

func BenchmarkParseTraceparent(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTraceparent(validTP); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBaggageValue(b *testing.B) {
	h := "userId=alice,serverNode=DF%2028,mw-dye=canary"
	b.ReportAllocs()
	for b.Loop() {
		if v, ok := BaggageValue(h, "mw-dye"); !ok || v != "canary" {
			b.Fatal(v)
		}
	}
}

func TestBaggageIsClean(t *testing.T) {
	long := strings.Repeat("k=v,", MaxBaggageMembers) + "z=1"
	for _, s := range []string{"", "k=v", " a=1 , b=2;p;q=3 ", "a=1,,b=2", "a=1,a=2", "a=1,bad", "a=%2", "a=1,b=2,a=3",
		"x=" + strings.Repeat("v", MaxBaggageBytes), "x=" + strings.Repeat("v", MaxBaggageBytes-2), long, "k0=v," + long, "=v", "a b=1"} {
		if got, want := BaggageIsClean(s), ParseBaggage(s).Dropped == 0; got != want {
			t.Errorf("BaggageIsClean(%.40q) = %v, want %v", s, got, want)
		}
	}
}

func TestBaggageValue2(t *testing.T) {
	for _, h := range []string{"", "a=1", "b=2,a=1", "a=%41,b=x;p, a=3", "a=\"bad,b=2", "b=2,a=1,b=3", " a = 1 ;q , b=%zz", "a=1", "x=1,a"} {
		for _, ks := range [][2]string{{"a", "b"}, {"b", "a"}, {"a", "a"}, {"a", "c"}} {
			v1, ok1, v2, ok2 := BaggageValue2(h, ks[0], ks[1])
			w1, wok1 := BaggageValue(h, ks[0])
			w2, wok2 := BaggageValue(h, ks[1])
			if v1 != w1 || ok1 != wok1 || v2 != w2 || ok2 != wok2 {
				t.Errorf("BaggageValue2(%q, %q, %q) = %q %v %q %v, want %q %v %q %v", h, ks[0], ks[1], v1, ok1, v2, ok2, w1, wok1, w2, wok2)
			}
		}
	}
}

// editedBaggage is AppendEditedBaggage's meaning: the list edited one step
// at a time.
func editedBaggage(header string, edits []BaggageEdit) string {
	bg := ParseBaggage(header)
	for _, e := range edits {
		if e.Set {
			bg.Set(e.Key, e.Value)
		} else {
			bg.Delete(e.Key)
		}
	}
	return bg.String()
}

func TestAppendEditedBaggage(t *testing.T) {
	long := strings.Repeat("x", MaxBaggageBytes-10)
	for _, tt := range []struct {
		header string
		edits  []BaggageEdit
		fast   bool
	}{
		{"k=v", []BaggageEdit{{Key: "mw-tenant"}, {Key: "mw-dye", Value: "stable", Set: true}}, true},
		{"", []BaggageEdit{{Key: "mw-tenant", Value: "retail", Set: true}, {Key: "mw-dye", Value: "v2", Set: true}}, true},
		{" a=1 ;p, mw-dye=old,b=%20 ,, mw-tenant=t", []BaggageEdit{{Key: "mw-tenant", Value: "x y,%", Set: true}, {Key: "mw-dye", Value: "c", Set: true}}, true},
		{"mw-dye=old,mw-tenant=t", []BaggageEdit{{Key: "mw-tenant"}, {Key: "mw-dye"}}, true},
		{"a=1,a=2", []BaggageEdit{{Key: "mw-dye", Value: "c", Set: true}}, false},              // not clean
		{"a=1", []BaggageEdit{{Key: "mw-dye", Value: "c", Set: true}, {Key: "mw-dye"}}, false}, // one key twice
		{"a=1", []BaggageEdit{{Key: "bad key", Value: "c", Set: true}}, false},
		{"a=" + long, []BaggageEdit{{Key: "mw-dye", Value: "canary", Set: true}}, false}, // past 8192 bytes
	} {
		got, ok := AppendEditedBaggage([]byte("prefix:"), tt.header, tt.edits...)
		if ok != tt.fast {
			t.Errorf("AppendEditedBaggage(%q, %v) ok = %v, want %v", tt.header, tt.edits, ok, tt.fast)
			continue
		}
		if !ok {
			if string(got) != "prefix:" {
				t.Errorf("refused edit changed b: %q", got)
			}
			continue
		}
		if want := "prefix:" + editedBaggage(tt.header, tt.edits); string(got) != want {
			t.Errorf("AppendEditedBaggage(%q, %v) = %q, want %q", tt.header, tt.edits, got, want)
		}
	}
}

func FuzzAppendEditedBaggage(f *testing.F) {
	f.Add("k=v", "mw-tenant", "", false, "mw-dye", "stable", true)
	f.Add(" a=1 ;p, mw-dye=old,b=%20", "mw-tenant", "x y", true, "mw-dye", "c", true)
	f.Fuzz(func(t *testing.T, header, k1, v1 string, set1 bool, k2, v2 string, set2 bool) {
		edits := []BaggageEdit{{k1, v1, set1}, {k2, v2, set2}}
		got, ok := AppendEditedBaggage(nil, header, edits...)
		if ok && string(got) != editedBaggage(header, edits) {
			t.Fatalf("AppendEditedBaggage(%q, %v) = %q, want %q", header, edits, got, editedBaggage(header, edits))
		}
	})
}

// TestIsTokenTable: the bitmap is RFC 7230's tchar set.
func TestIsTokenTable(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := c > 0x20 && c < 0x7f && !strings.ContainsRune("\"(),/:;<=>?@[\\]{}", rune(c))
		if got := isToken(string([]byte{byte(c)})); got != want {
			t.Errorf("isToken(%q) = %v, want %v", rune(c), got, want)
		}
	}
}
