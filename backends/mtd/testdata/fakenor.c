/*
 * fakenor.so: makes the kernel's mtdram look like NOR flash to a program
 * run with LD_PRELOAD=fakenor.so, by changing the type MEMGETINFO reports
 * from MTD_RAM (1) to MTD_NORFLASH (3). libubootenv (fw_printenv,
 * fw_setenv) refuses any MTD type but NOR and NAND, and mtdram is the MTD
 * device every Debian kernel ships; on NOR libubootenv uses boolean flags,
 * erases a sector before writing it and marks the old copy obsolete by
 * programming one byte, all of which mtdram does as NOR does. Nothing else
 * is changed.
 *
 *   gcc -shared -fPIC -O2 -o fakenor.so fakenor.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <mtd/mtd-user.h>

int ioctl(int fd, unsigned long req, ...)
{
	static int (*real)(int, unsigned long, ...);
	va_list ap;
	void *arg;
	int ret;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!real)
		real = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
	ret = real(fd, req, arg);
	if (ret == 0 && req == MEMGETINFO && ((struct mtd_info_user *)arg)->type == MTD_RAM)
		((struct mtd_info_user *)arg)->type = MTD_NORFLASH;
	return ret;
}
