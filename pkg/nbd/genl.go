package nbd

import (
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
)

// The kernel's generic netlink interface (include/uapi/linux/nbd-netlink.h).
// The message bodies are built and parsed here, portably, so they can be
// tested anywhere; only sending them is Linux-specific.
const (
	genlFamily  = "nbd"
	genlVersion = 1

	genlCmdConnect    = 1
	genlCmdDisconnect = 2
	genlCmdStatus     = 5

	attrIndex           = 1 // u32
	attrSizeBytes       = 2 // u64
	attrBlockSizeBytes  = 3 // u64
	attrTimeout         = 4 // u64, seconds
	attrServerFlags     = 5 // u64, transmission flags
	attrClientFlags     = 6 // u64
	attrSockets         = 7 // nested NBD_SOCK_ITEM
	attrDeadConnTimeout = 8 // u64, seconds
	attrDeviceList      = 9 // nested NBD_DEVICE_ITEM
	attrBackend         = 10

	sockItem = 1 // NBD_SOCK_ITEM, nested
	sockFD   = 1 // NBD_SOCK_FD, u32

	deviceItem      = 1 // NBD_DEVICE_ITEM, nested
	deviceIndex     = 1 // NBD_DEVICE_INDEX, u32
	deviceConnected = 2 // NBD_DEVICE_CONNECTED, u8
)

// connectRequest holds the attributes of NBD_CMD_CONNECT.
type connectRequest struct {
	index           int // AnyIndex: let the kernel choose
	size            uint64
	blockSize       uint64
	timeout         time.Duration // 0: not sent
	deadConnTimeout time.Duration // 0: not sent
	flags           TransmissionFlags
	fds             []int
	backend         string
}

// seconds rounds d up to whole seconds, the unit of the timeout attributes.
func seconds(d time.Duration) uint64 {
	return uint64((d + time.Second - 1) / time.Second)
}

func (c connectRequest) encode() ([]byte, error) {
	if len(c.fds) == 0 {
		return nil, errors.New("nbd: connect needs at least one socket")
	}
	ae := netlink.NewAttributeEncoder()
	if c.index != AnyIndex {
		ae.Uint32(attrIndex, uint32(c.index))
	}
	ae.Uint64(attrSizeBytes, c.size)
	ae.Uint64(attrBlockSizeBytes, c.blockSize)
	if c.timeout > 0 {
		ae.Uint64(attrTimeout, seconds(c.timeout))
	}
	if c.deadConnTimeout > 0 {
		ae.Uint64(attrDeadConnTimeout, seconds(c.deadConnTimeout))
	}
	ae.Uint64(attrServerFlags, uint64(c.flags))
	ae.Nested(attrSockets, func(nae *netlink.AttributeEncoder) error {
		for _, fd := range c.fds {
			nae.Nested(sockItem, func(s *netlink.AttributeEncoder) error {
				s.Uint32(sockFD, uint32(fd))
				return nil
			})
		}
		return nil
	})
	if c.backend != "" {
		ae.String(attrBackend, c.backend)
	}
	return ae.Encode()
}

// encodeIndex builds the body of DISCONNECT and STATUS; AnyIndex omits the
// index (STATUS then lists every device).
func encodeIndex(index int) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	if index != AnyIndex {
		ae.Uint32(attrIndex, uint32(index))
	}
	return ae.Encode()
}

// decodeConnectReply returns the index in NBD_CMD_CONNECT's reply
// (nbd_connect_reply).
func decodeConnectReply(b []byte) (int, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, fmt.Errorf("nbd: decode connect reply: %w", err)
	}
	index := -1
	for ad.Next() {
		if ad.Type() == attrIndex {
			index = int(ad.Uint32())
		}
	}
	if err := ad.Err(); err != nil {
		return 0, fmt.Errorf("nbd: decode connect reply: %w", err)
	}
	if index < 0 {
		return 0, errors.New("nbd: decode connect reply: no NBD_ATTR_INDEX")
	}
	return index, nil
}

// maxStatusDevices bounds what a status reply may list; the kernel's own
// limit is 1<<20 minors (MINORMASK).
const maxStatusDevices = 1 << 20

// decodeStatusReply parses NBD_CMD_STATUS's reply (nbd_genl_status):
// DEVICE_LIST { DEVICE_ITEM { INDEX, CONNECTED } ... }.
func decodeStatusReply(b []byte) ([]DeviceStatus, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, fmt.Errorf("nbd: decode status reply: %w", err)
	}
	var out []DeviceStatus
	for ad.Next() {
		if ad.Type() != attrDeviceList {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				if list.Type() != deviceItem {
					continue
				}
				if len(out) >= maxStatusDevices {
					return errors.New("too many devices")
				}
				st := DeviceStatus{Index: -1}
				list.Nested(func(item *netlink.AttributeDecoder) error {
					for item.Next() {
						switch item.Type() {
						case deviceIndex:
							st.Index = int(item.Uint32())
						case deviceConnected:
							st.Connected = item.Uint8() != 0
						}
					}
					return item.Err()
				})
				if st.Index < 0 {
					return errors.New("device item without NBD_DEVICE_INDEX")
				}
				out = append(out, st)
			}
			return list.Err()
		})
	}
	if err := ad.Err(); err != nil {
		return nil, fmt.Errorf("nbd: decode status reply: %w", err)
	}
	return out, nil
}
