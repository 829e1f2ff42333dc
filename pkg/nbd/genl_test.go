package nbd

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
)

// attrs decodes one level of attributes into type → raw data, for checks.
func attrs(t *testing.T, b []byte) map[uint16][]byte {
	t.Helper()
	as, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		t.Fatalf("UnmarshalAttributes(%x) = %v", b, err)
	}
	m := map[uint16][]byte{}
	for _, a := range as {
		m[a.Type&^(netlink.Nested|netlink.NetByteOrder)] = a.Data
	}
	return m
}

func TestConnectRequestEncode(t *testing.T) {
	b, err := connectRequest{
		index:           3,
		size:            1 << 30,
		blockSize:       4096,
		timeout:         1500 * time.Millisecond,
		deadConnTimeout: time.Minute,
		flags:           FlagHasFlags | FlagSendFlush | FlagCanMultiConn,
		fds:             []int{7, 9},
		backend:         "iscsi:10.0.0.1::3260:0:iqn.x",
	}.encode()
	if err != nil {
		t.Fatal(err)
	}
	m := attrs(t, b)
	u64 := func(typ uint16) uint64 { return binary.NativeEndian.Uint64(m[typ]) }
	u32 := func(typ uint16) uint32 { return binary.NativeEndian.Uint32(m[typ]) }
	checks := []struct {
		name      string
		got, want uint64
	}{
		{"INDEX", uint64(u32(attrIndex)), 3},
		{"SIZE_BYTES", u64(attrSizeBytes), 1 << 30},
		{"BLOCK_SIZE_BYTES", u64(attrBlockSizeBytes), 4096},
		{"TIMEOUT (rounded up to seconds)", u64(attrTimeout), 2},
		{"DEAD_CONN_TIMEOUT", u64(attrDeadConnTimeout), 60},
		{"SERVER_FLAGS", u64(attrServerFlags), uint64(FlagHasFlags | FlagSendFlush | FlagCanMultiConn)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("connect attribute %s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if got := string(m[attrBackend]); got != "iscsi:10.0.0.1::3260:0:iqn.x\x00" {
		t.Errorf("connect attribute BACKEND_IDENTIFIER = %q", got)
	}
	// SOCKETS { SOCK_ITEM { SOCK_FD } ... }, one item per descriptor.
	var fds []uint32
	for _, item := range mustAttrs(t, m[attrSockets]) {
		if item.Type&^netlink.Nested != sockItem {
			t.Errorf("SOCKETS holds attribute type %d, want NBD_SOCK_ITEM", item.Type)
		}
		for _, fd := range mustAttrs(t, item.Data) {
			if fd.Type == sockFD {
				fds = append(fds, binary.NativeEndian.Uint32(fd.Data))
			}
		}
	}
	if diff := cmp.Diff([]uint32{7, 9}, fds); diff != "" {
		t.Errorf("socket descriptors (-want +got):\n%s", diff)
	}
}

func mustAttrs(t *testing.T, b []byte) []netlink.Attribute {
	t.Helper()
	as, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		t.Fatalf("UnmarshalAttributes(%x) = %v", b, err)
	}
	return as
}

func TestConnectRequestOptional(t *testing.T) {
	b, err := connectRequest{index: AnyIndex, size: 512, blockSize: 512, fds: []int{1}}.encode()
	if err != nil {
		t.Fatal(err)
	}
	m := attrs(t, b)
	for _, typ := range []uint16{attrIndex, attrTimeout, attrDeadConnTimeout, attrBackend} {
		if _, ok := m[typ]; ok {
			t.Errorf("connect with defaults carries attribute %d, want it left out", typ)
		}
	}
	if _, err := (connectRequest{size: 512}).encode(); err == nil {
		t.Errorf("connect without sockets encoded, want an error")
	}
}

func statusReplySeed(sts ...DeviceStatus) []byte {
	ae := netlink.NewAttributeEncoder()
	ae.Nested(attrDeviceList, func(l *netlink.AttributeEncoder) error {
		for _, s := range sts {
			l.Nested(deviceItem, func(i *netlink.AttributeEncoder) error {
				i.Uint32(deviceIndex, uint32(s.Index))
				c := uint8(0)
				if s.Connected {
					c = 1
				}
				i.Uint8(deviceConnected, c)
				return nil
			})
		}
		return nil
	})
	b, _ := ae.Encode()
	return b
}

func TestDecodeStatusReply(t *testing.T) {
	want := []DeviceStatus{{0, true}, {1, false}, {15, true}}
	got, err := decodeStatusReply(statusReplySeed(want...))
	if err != nil {
		t.Fatalf("decodeStatusReply = %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decodeStatusReply (-want +got):\n%s", diff)
	}
	empty, err := decodeStatusReply(statusReplySeed())
	if err != nil || len(empty) != 0 {
		t.Errorf("decodeStatusReply(empty list) = %v, %v, want no devices", empty, err)
	}
	// An item without an index is malformed.
	ae := netlink.NewAttributeEncoder()
	ae.Nested(attrDeviceList, func(l *netlink.AttributeEncoder) error {
		l.Nested(deviceItem, func(i *netlink.AttributeEncoder) error { i.Uint8(deviceConnected, 1); return nil })
		return nil
	})
	b, _ := ae.Encode()
	if _, err := decodeStatusReply(b); err == nil {
		t.Errorf("decodeStatusReply(item without index) = nil error, want one")
	}
}

func TestDecodeConnectReply(t *testing.T) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrIndex, 5)
	b, _ := ae.Encode()
	if got, err := decodeConnectReply(b); err != nil || got != 5 {
		t.Errorf("decodeConnectReply(index 5) = %d, %v, want 5", got, err)
	}
	if _, err := decodeConnectReply(nil); err == nil {
		t.Errorf("decodeConnectReply(empty) = nil error, want one")
	}
	if _, err := decodeConnectReply([]byte{1, 2, 3}); err == nil {
		t.Errorf("decodeConnectReply(garbage) = nil error, want one")
	}
}

func TestEncodeIndex(t *testing.T) {
	b, _ := encodeIndex(AnyIndex)
	if len(b) != 0 {
		t.Errorf("encodeIndex(AnyIndex) = %x, want no attributes", b)
	}
	b, _ = encodeIndex(2)
	if m := attrs(t, b); binary.NativeEndian.Uint32(m[attrIndex]) != 2 {
		t.Errorf("encodeIndex(2) = %x", b)
	}
}

func TestParseDevice(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"/dev/nbd0", 0, true},
		{"/dev/nbd15", 15, true},
		{"nbd3", 3, true},
		{"7", 7, true},
		{"/dev/nbd", 0, false},
		{"/dev/nbd0p1", 0, false},
		{"/dev/sda", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDevice(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDevice(%q) = %d, %v, want %d (ok=%v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if DevicePath(12) != "/dev/nbd12" {
		t.Errorf("DevicePath(12) = %q", DevicePath(12))
	}
}

func TestExportFlags(t *testing.T) {
	base := FlagHasFlags | FlagSendFlush | FlagSendFUA
	tests := []struct {
		name string
		dev  func() *memDevice
		opts AttachOptions
		want TransmissionFlags
	}{
		{"plain", func() *memDevice { return newMemDevice(4096, 512) }, AttachOptions{Connections: 1}, base},
		{"multi", func() *memDevice { return newMemDevice(4096, 512) }, AttachOptions{Connections: 4}, base | FlagCanMultiConn},
		{"trim", func() *memDevice { m := newMemDevice(4096, 512); m.canTrim = true; return m },
			AttachOptions{Connections: 1}, base | FlagSendTrim},
		{"read-only device", func() *memDevice { m := newMemDevice(4096, 512); m.readOnly = true; m.canTrim = true; return m },
			AttachOptions{Connections: 1}, base | FlagReadOnly},
		{"read-only option", func() *memDevice { return newMemDevice(4096, 512) },
			AttachOptions{Connections: 1, ReadOnly: true, Rotational: true}, base | FlagReadOnly | FlagRotational},
	}
	for _, tt := range tests {
		if got := exportFlags(tt.dev(), tt.opts); got != tt.want {
			t.Errorf("%s: exportFlags = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestAttachOptionsValidate(t *testing.T) {
	dev := newMemDevice(1<<20, 512)
	tests := []struct {
		name string
		o    AttachOptions
		dev  *memDevice
		ok   bool
	}{
		{"defaults", AttachOptions{}.withDefaults(dev), dev, true},
		{"4K blocks", AttachOptions{BlockSize: 4096}, dev, true},
		{"block too small", AttachOptions{BlockSize: 256}, dev, false},
		{"block above page", AttachOptions{BlockSize: 8192}, dev, false},
		{"block not power of two", AttachOptions{BlockSize: 1536}, dev, false},
		{"bad index", AttachOptions{Index: -2, BlockSize: 512}, dev, false},
		{"empty device", AttachOptions{BlockSize: 512}, newMemDevice(0, 512), false},
	}
	for _, tt := range tests {
		if err := tt.o.validate(tt.dev, 4096); (err == nil) != tt.ok {
			t.Errorf("%s: validate = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	if o := (AttachOptions{}).withDefaults(dev); o.Connections < 1 || o.Connections > MaxDefaultConnections || o.BlockSize != 512 {
		t.Errorf("withDefaults = %+v", o)
	}
}

func TestSeconds(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want uint64
	}{{0, 0}, {time.Nanosecond, 1}, {time.Second, 1}, {30 * time.Second, 30}, {30*time.Second + 1, 31}} {
		if got := seconds(tt.d); got != tt.want {
			t.Errorf("seconds(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}

func TestInvalidIndex(t *testing.T) {
	if err := Disconnect(t.Context(), -1); err == nil {
		t.Errorf("Disconnect(-1) = nil, want an error")
	}
	if _, err := Status(t.Context(), -5); err == nil {
		t.Errorf("Status(-5) = nil error, want one")
	}
}
