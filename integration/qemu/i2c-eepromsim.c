// SPDX-License-Identifier: GPL-2.0-only
/*
 * i2c-eepromsim: an I2C adapter that speaks plain I2C messages only (no
 * SMBus), with one emulated EEPROM of the 24c32 kind on it: 4 KiB behind a
 * 16-bit word address sent high byte first, 32-byte pages.
 *
 * It is the counterpart of i2c-stub for the nvmemfs integration test under
 * qemu: i2c-stub emulates SMBus chips, so user space reaches it through the
 * I2C_SMBUS ioctl; this adapter is reached through I2C_RDWR, the ioctl of
 * combined I2C messages, which an EEPROM with 16-bit word addresses needs.
 * Built out of tree by run.sh for the arm64 guest, where a 32-bit process
 * goes through i2c-dev's compat handler (struct i2c_msg with a 32-bit
 * buf pointer) and a 64-bit one through the native handler.
 *
 * The chip behaves as a real one does, as far as at24 and nvmemfs can see:
 *   - a write message sets the address pointer from its first two bytes,
 *     and writes any further bytes from there, wrapping within the page;
 *     a write of one byte sets the pointer's high byte only;
 *   - a read message reads from the pointer on, wrapping at the chip's end;
 *   - after a write with data the chip is busy with its write cycle: it
 *     does not acknowledge its address (-ENXIO) for write_cycle_us
 *     microseconds, so the writer has to poll as it would on a board. The
 *     cycle is a time, as on a real chip, not a count of refusals: a
 *     writer that was not scheduled for a while finds the chip ready, as
 *     it would on a board (at24's 25 ms budget would fail otherwise under
 *     a slow emulator);
 *   - an address other than the chip's is not acknowledged (-ENXIO).
 * An erased chip reads 0xff. The counters in /sys/module/i2c_eepromsim/
 * parameters say how many messages were transferred and how many NAKed.
 */

#include <linux/errno.h>
#include <linux/i2c.h>
#include <linux/init.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/string.h>

#define SIM_SIZE 4096 /* bytes: a 24c32 */
#define SIM_PAGE 32   /* bytes a page write may fill before wrapping */

static unsigned short addr = 0x54;
module_param(addr, ushort, 0444);
MODULE_PARM_DESC(addr, "7-bit address of the emulated EEPROM (default 0x54)");

static unsigned int write_cycle_us = 3000;
module_param(write_cycle_us, uint, 0444);
MODULE_PARM_DESC(write_cycle_us, "microseconds the chip does not acknowledge its address after a write (default 3000)");

static unsigned long messages;
module_param(messages, ulong, 0444);
MODULE_PARM_DESC(messages, "messages transferred to the EEPROM (read only)");

static unsigned long naks;
module_param(naks, ulong, 0444);
MODULE_PARM_DESC(naks, "messages the EEPROM did not acknowledge while busy (read only)");

/* The chip's state. The I2C core holds the adapter's lock around
 * sim_xfer, so nothing else is needed to keep it consistent. */
static u8 sim_mem[SIM_SIZE];
static unsigned int sim_ptr;  /* the address pointer */
static ktime_t sim_ready;     /* the end of the write cycle */

static void sim_write(const u8 *buf, u16 len)
{
	u16 i;

	if (len == 1) {
		sim_ptr = (buf[0] << 8) % SIM_SIZE;
		return;
	}
	sim_ptr = ((buf[0] << 8) | buf[1]) % SIM_SIZE;
	for (i = 2; i < len; i++) {
		sim_mem[sim_ptr] = buf[i];
		/* The pointer's low bits count within the page only. */
		sim_ptr = (sim_ptr & ~(SIM_PAGE - 1)) | ((sim_ptr + 1) & (SIM_PAGE - 1));
	}
	if (len > 2)
		sim_ready = ktime_add_us(ktime_get(), write_cycle_us);
}

static void sim_read(u8 *buf, u16 len)
{
	u16 i;

	for (i = 0; i < len; i++) {
		buf[i] = sim_mem[sim_ptr];
		sim_ptr = (sim_ptr + 1) % SIM_SIZE;
	}
}

static int sim_xfer(struct i2c_adapter *adap, struct i2c_msg *msgs, int num)
{
	int i;

	for (i = 0; i < num; i++) {
		struct i2c_msg *m = &msgs[i];

		if (m->flags & I2C_M_TEN)
			return -EOPNOTSUPP;
		if (m->addr != addr)
			return -ENXIO;
		if (ktime_before(ktime_get(), sim_ready)) {
			naks++;
			return -ENXIO;
		}
		messages++;
		if (m->flags & I2C_M_RD)
			sim_read(m->buf, m->len);
		else if (m->len > 0)
			sim_write(m->buf, m->len);
	}
	return num;
}

static u32 sim_functionality(struct i2c_adapter *adap)
{
	return I2C_FUNC_I2C;
}

static const struct i2c_algorithm sim_algorithm = {
	.master_xfer = sim_xfer,
	.functionality = sim_functionality,
};

static struct i2c_adapter sim_adapter = {
	.owner = THIS_MODULE,
	.algo = &sim_algorithm,
	.name = "nvmemfs EEPROM simulator",
};

static int __init sim_init(void)
{
	if (addr < 0x03 || addr > 0x77) {
		pr_err("i2c-eepromsim: address 0x%x is not a 7-bit device address\n", addr);
		return -EINVAL;
	}
	memset(sim_mem, 0xff, sizeof(sim_mem));
	pr_info("i2c-eepromsim: 24c32-like EEPROM of %d bytes at 0x%02x, write cycle %u us\n",
		SIM_SIZE, addr, write_cycle_us);
	return i2c_add_adapter(&sim_adapter);
}

static void __exit sim_exit(void)
{
	i2c_del_adapter(&sim_adapter);
}

module_init(sim_init);
module_exit(sim_exit);

MODULE_DESCRIPTION("I2C adapter with one emulated 24c32 EEPROM, plain I2C only (nvmemfs integration test)");
MODULE_LICENSE("GPL");
