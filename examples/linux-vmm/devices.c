/* SPDX-License-Identifier: MIT */
/*
 * devices.c - linux-vmm's port I/O: an 8250 UART at 0x3f8 on IRQ 4
 * (output, the transmitter-empty interrupt, loopback for the driver's
 * autoconfiguration), port 0x64 that reads as 0 and where a write of 0xfe
 * (reboot=k) ends the run; every other port reads as all ones. The
 * in-kernel irqchip and PIT do the rest.
 *
 * The UART also watches the guest's console lines: "Kernel panic",
 * "GUEST: init" (the boot's time) and "GUEST: tick N" (the snapshot's
 * moment).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "linux-vmm.h"

static void
uart_irq(struct vmm *v)
{
	struct kvm_irq_level irq = { .irq = 4 };

	irq.level = (v->rx_ready && (v->ier & 1)) ||
		    (v->thre_pending && (v->ier & 2));
	ioctl(v->vm_fd, KVM_IRQ_LINE, &irq);
}

/* One byte of the guest's console, printed a line at a time. */
static void
uart_putc(struct vmm *v, uint8_t c)
{
	if (c == '\r')
		return;
	if (c != '\n' && v->line_len < sizeof(v->line) - 1) {
		v->line[v->line_len++] = (char)c;
		return;
	}
	v->line[v->line_len] = 0;
	printf("%s\n", v->line);
	fflush(stdout);
	if (strstr(v->line, "Kernel panic"))
		v->panicked = true;
	if (!v->t_init && strstr(v->line, "GUEST: init"))
		v->t_init = now();
	if (sscanf(v->line, "GUEST: tick %d", &v->last_tick) == 1 &&
	    v->last_tick == v->snapshot_at) {
		/* pairs with the acquire loads in vcpu_main() and main() */
		atomic_store_explicit(&v->snapshot, 1, memory_order_release);
		stop_all(v);
	}
	v->line_len = 0;
}

static void
uart_write(struct vmm *v, unsigned reg, bool dlab, uint8_t x)
{
	switch (reg) {
	case 0:
		if (dlab) {
			v->dll = x;
		} else if (v->mcr & 0x10) { /* loopback */
			v->rbr = x;
			v->rx_ready = true;
		} else {
			uart_putc(v, x);
			v->thre_pending = true;
		}
		break;
	case 1:
		if (dlab) {
			v->dlm = x;
		} else {
			/* enabling THRI with an empty THR raises it */
			if ((x & 2) && !(v->ier & 2))
				v->thre_pending = true;
			v->ier = x & 0x0f;
		}
		break;
	case 3:
		v->lcr = x;
		break;
	case 4:
		v->mcr = x & 0x1f;
		break;
	case 7:
		v->scr = x;
		break;
	default:
		break; /* FCR, LSR, MSR */
	}
}

/* MSR: in loopback the MCR lines come back; else DCD, DSR, CTS. */
static uint8_t
uart_msr(const struct vmm *v)
{
	if (!(v->mcr & 0x10))
		return 0xb0;
	return (uint8_t)(((v->mcr & 1) << 5) | ((v->mcr & 2) << 3) |
			 ((v->mcr & 4) << 4) | ((v->mcr & 8) << 4));
}

static uint8_t
uart_read(struct vmm *v, unsigned reg, bool dlab)
{
	switch (reg) {
	case 0:
		if (dlab)
			return v->dll;
		v->rx_ready = false;
		return v->rbr;
	case 1:
		return dlab ? v->dlm : v->ier;
	case 2: /* IIR: no FIFO, so the driver sees a 16450 */
		if (v->rx_ready && (v->ier & 1))
			return 0x04;
		if (v->thre_pending && (v->ier & 2)) {
			v->thre_pending = false;
			return 0x02;
		}
		return 0x01;
	case 3:
		return v->lcr;
	case 4:
		return v->mcr;
	case 5: /* LSR: transmitter empty, and data ready */
		return 0x60 | (v->rx_ready ? 1 : 0);
	case 6:
		return uart_msr(v);
	default:
		return v->scr;
	}
}

static void
uart_io(struct vmm *v, uint16_t port, bool out, uint8_t *data)
{
	unsigned reg = port - 0x3f8;
	bool dlab;

	pthread_mutex_lock(&v->uart_lock);
	dlab = v->lcr & 0x80;
	if (out)
		uart_write(v, reg, dlab, *data);
	else
		*data = uart_read(v, reg, dlab);
	uart_irq(v);
	pthread_mutex_unlock(&v->uart_lock);
}

/* A KVM_EXIT_IO: every byte of a string instruction's count. */
void
handle_io(struct vmm *v, struct kvm_run *run)
{
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool out = run->io.direction == KVM_EXIT_IO_OUT;
	uint16_t port = run->io.port;

	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		if (port >= 0x3f8 && port <= 0x3ff && run->io.size == 1) {
			uart_io(v, port, out, data);
		} else if (port == 0x64) {
			if (out && *data == 0xfe) {
				/* the keyboard controller's reset; pairs
				 * with the acquire load in main() */
				atomic_store_explicit(&v->reset, 1,
						      memory_order_release);
				stop_all(v);
			} else if (!out) {
				memset(data, 0, run->io.size);
			}
		} else if (!out) {
			memset(data, 0xff, run->io.size); /* nothing there */
		}
	}
}
