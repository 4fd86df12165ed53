// SPDX-License-Identifier: GPL-2.0-only
/*
 * pintest: a VFIO mdev that does DMA the way an emulated device does, for
 * deno-vmm's real-kernel tests of type1's pinned dirty scope.
 *
 * The parent is /sys/class/mdev_bus/pintest; its one type is
 * mdev_supported_types/pintest-1. Each mdev is an emulated-IOMMU VFIO device
 * (so its group is in type1's pinned scope from the moment it attaches) with
 * one region, index 0 at offset 0, of 64-bit registers (little-endian):
 *
 *   0x00 PIN        write an IOVA: vfio_pin_pages() of that page (read+write)
 *   0x08 DMA_WRITE  write an IOVA: vfio_dma_rw() of DATA's 8 bytes to it
 *   0x10 DATA       read/write: what DMA_WRITE writes and DMA_READ fills
 *   0x18 UNPIN      write an IOVA: vfio_unpin_pages() of that page
 *   0x20 DMA_READ   write an IOVA: vfio_dma_rw() of 8 bytes from it into DATA
 *   0x28 PINNED     read: pages pinned now
 *   0x30 UNMAPPED   read: pages unpinned because their IOVA was unmapped
 *
 * A failed request fails the write(2) with the kernel's errno (EINVAL for an
 * IOVA that is not mapped, EEXIST for a page already pinned, ENOSPC when
 * PINTEST_MAX_PINS pages are pinned). Unmapping an IOVA range (dma_unmap)
 * and closing the device unpin what they cover.
 *
 * Every DMA write goes through pintest_dma_write(), which records its page
 * in the device's own DMA log while logging runs (vfio_log_ops: log_start,
 * log_stop, log_read_and_clear reporting with iova_bitmap_set). The log holds
 * PINTEST_MAX_LOGGED pages; past that it reports every page of a range read,
 * as the UAPI asks of a log that lost track. A second log_start without a
 * log_stop is EINVAL, as is log_read_and_clear while not logging.
 */
#include <linux/device.h>
#include <linux/iommu.h>
#include <linux/iova_bitmap.h>
#include <linux/mdev.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/uaccess.h>
#include <linux/vfio.h>

#define PINTEST_NAME "pintest"
#define PINTEST_REGION_SIZE 0x1000
#define PINTEST_MAX_PINS 256
#define PINTEST_MAX_LOGGED 1024

enum {
	PINTEST_REG_PIN = 0x00,
	PINTEST_REG_DMA_WRITE = 0x08,
	PINTEST_REG_DATA = 0x10,
	PINTEST_REG_UNPIN = 0x18,
	PINTEST_REG_DMA_READ = 0x20,
	PINTEST_REG_PINNED = 0x28,
	PINTEST_REG_UNMAPPED = 0x30,
};

struct pintest_pin {
	dma_addr_t iova;
	struct page *page;
};

struct pintest_state {
	struct vfio_device vdev;
	struct mutex lock; /* pins, data, counters */
	struct pintest_pin pins[PINTEST_MAX_PINS];
	unsigned int nr_pins;
	u64 data;
	u64 unmapped;
	bool logging;
	bool log_overflow;
	unsigned int nr_logged;
	dma_addr_t logged[PINTEST_MAX_LOGGED];
};

static struct pintest_parent {
	struct class *class;
	struct device dev;
	struct mdev_parent parent;
} pintest_parent;

static struct mdev_type pintest_type = {
	.sysfs_name = "1",
	.pretty_name = "Pins and DMA-writes guest pages on request",
};

static struct mdev_type *pintest_types[] = { &pintest_type };

static struct pintest_state *to_state(struct vfio_device *vdev)
{
	return container_of(vdev, struct pintest_state, vdev);
}

static int pintest_find(struct pintest_state *s, dma_addr_t iova)
{
	unsigned int i;

	for (i = 0; i < s->nr_pins; i++)
		if (s->pins[i].iova == iova)
			return i;
	return -1;
}

static void pintest_drop(struct pintest_state *s, unsigned int i)
{
	vfio_unpin_pages(&s->vdev, s->pins[i].iova, 1);
	s->pins[i] = s->pins[--s->nr_pins];
}

static int pintest_pin(struct pintest_state *s, dma_addr_t iova)
{
	struct page *page;
	int ret;

	if (iova & ~PAGE_MASK)
		return -EINVAL;
	if (pintest_find(s, iova) >= 0)
		return -EEXIST;
	if (s->nr_pins == PINTEST_MAX_PINS)
		return -ENOSPC;
	ret = vfio_pin_pages(&s->vdev, iova, 1, IOMMU_READ | IOMMU_WRITE, &page);
	if (ret < 0)
		return ret;
	if (ret != 1)
		return -EFAULT;
	s->pins[s->nr_pins].iova = iova;
	s->pins[s->nr_pins].page = page;
	s->nr_pins++;
	return 0;
}

static int pintest_unpin(struct pintest_state *s, dma_addr_t iova)
{
	int i = pintest_find(s, iova & PAGE_MASK);

	if (i < 0)
		return -ENOENT;
	pintest_drop(s, i);
	return 0;
}

/* Records a written page in the DMA log (under s->lock). */
static void pintest_log_page(struct pintest_state *s, dma_addr_t page)
{
	unsigned int i;

	for (i = 0; i < s->nr_logged; i++)
		if (s->logged[i] == page)
			return;
	if (s->nr_logged == PINTEST_MAX_LOGGED)
		s->log_overflow = true;
	else
		s->logged[s->nr_logged++] = page;
}

/* The device's DMA write: logged while DMA logging runs. */
static int pintest_dma_write(struct pintest_state *s, dma_addr_t iova)
{
	int ret = vfio_dma_rw(&s->vdev, iova, &s->data, sizeof(s->data), true);

	if (!ret && s->logging) {
		pintest_log_page(s, iova & PAGE_MASK);
		if (((iova + sizeof(s->data) - 1) & PAGE_MASK) != (iova & PAGE_MASK))
			pintest_log_page(s, (iova + sizeof(s->data) - 1) & PAGE_MASK);
	}
	return ret;
}

static int pintest_log_start(struct vfio_device *vdev,
			     struct rb_root_cached *ranges, u32 nnodes,
			     u64 *page_size)
{
	struct pintest_state *s = to_state(vdev);
	int ret = 0;

	mutex_lock(&s->lock);
	if (s->logging) {
		ret = -EINVAL;
	} else {
		s->logging = true;
		s->log_overflow = false;
		s->nr_logged = 0;
		*page_size = PAGE_SIZE;
	}
	mutex_unlock(&s->lock);
	return ret;
}

static int pintest_log_stop(struct vfio_device *vdev)
{
	struct pintest_state *s = to_state(vdev);

	mutex_lock(&s->lock);
	s->logging = false;
	s->nr_logged = 0;
	mutex_unlock(&s->lock);
	return 0;
}

static int pintest_log_read_and_clear(struct vfio_device *vdev,
				      unsigned long iova, unsigned long length,
				      struct iova_bitmap *dirty)
{
	struct pintest_state *s = to_state(vdev);
	unsigned int i = 0;

	mutex_lock(&s->lock);
	if (!s->logging) {
		mutex_unlock(&s->lock);
		return -EINVAL;
	}
	if (s->log_overflow) {
		iova_bitmap_set(dirty, iova, length);
	}
	while (i < s->nr_logged) {
		dma_addr_t page = s->logged[i];

		if (page + PAGE_SIZE > iova && page < iova + length) {
			iova_bitmap_set(dirty, page, PAGE_SIZE);
			s->logged[i] = s->logged[--s->nr_logged];
		} else {
			i++;
		}
	}
	mutex_unlock(&s->lock);
	return 0;
}

static const struct vfio_log_ops pintest_log_ops = {
	.log_start = pintest_log_start,
	.log_stop = pintest_log_stop,
	.log_read_and_clear = pintest_log_read_and_clear,
};

static int pintest_dma_read(struct pintest_state *s, dma_addr_t iova)
{
	return vfio_dma_rw(&s->vdev, iova, &s->data, sizeof(s->data), false);
}

static ssize_t pintest_write(struct vfio_device *vdev, const char __user *buf,
			     size_t count, loff_t *ppos)
{
	struct pintest_state *s = to_state(vdev);
	loff_t pos = *ppos;
	u64 value;
	int ret;

	if (count != sizeof(value) || pos < 0 || pos % sizeof(value) ||
	    pos >= PINTEST_REGION_SIZE)
		return -EINVAL;
	if (copy_from_user(&value, buf, sizeof(value)))
		return -EFAULT;
	mutex_lock(&s->lock);
	switch (pos) {
	case PINTEST_REG_PIN:
		ret = pintest_pin(s, value);
		break;
	case PINTEST_REG_DMA_WRITE:
		ret = pintest_dma_write(s, value);
		break;
	case PINTEST_REG_DATA:
		s->data = value;
		ret = 0;
		break;
	case PINTEST_REG_UNPIN:
		ret = pintest_unpin(s, value);
		break;
	case PINTEST_REG_DMA_READ:
		ret = pintest_dma_read(s, value);
		break;
	default:
		ret = -EINVAL;
	}
	mutex_unlock(&s->lock);
	if (ret)
		return ret;
	*ppos += count;
	return count;
}

static ssize_t pintest_read(struct vfio_device *vdev, char __user *buf,
			    size_t count, loff_t *ppos)
{
	struct pintest_state *s = to_state(vdev);
	loff_t pos = *ppos;
	u64 value;

	if (count != sizeof(value) || pos < 0 || pos % sizeof(value) ||
	    pos >= PINTEST_REGION_SIZE)
		return -EINVAL;
	mutex_lock(&s->lock);
	switch (pos) {
	case PINTEST_REG_DATA:
		value = s->data;
		break;
	case PINTEST_REG_PINNED:
		value = s->nr_pins;
		break;
	case PINTEST_REG_UNMAPPED:
		value = s->unmapped;
		break;
	default:
		value = 0;
	}
	mutex_unlock(&s->lock);
	if (copy_to_user(buf, &value, sizeof(value)))
		return -EFAULT;
	*ppos += count;
	return count;
}

/* type1 (or iommufd) unmaps [iova, iova + length): a device must let go of it. */
static void pintest_dma_unmap(struct vfio_device *vdev, u64 iova, u64 length)
{
	struct pintest_state *s = to_state(vdev);
	unsigned int i = 0;

	mutex_lock(&s->lock);
	while (i < s->nr_pins) {
		if (s->pins[i].iova >= iova && s->pins[i].iova - iova < length) {
			pintest_drop(s, i);
			s->unmapped++;
		} else {
			i++;
		}
	}
	mutex_unlock(&s->lock);
}

static void pintest_close_device(struct vfio_device *vdev)
{
	struct pintest_state *s = to_state(vdev);

	mutex_lock(&s->lock);
	while (s->nr_pins > 0)
		pintest_drop(s, 0);
	s->data = 0;
	s->logging = false;
	s->nr_logged = 0;
	mutex_unlock(&s->lock);
}

static long pintest_ioctl(struct vfio_device *vdev, unsigned int cmd,
			  unsigned long arg)
{
	unsigned long minsz;

	switch (cmd) {
	case VFIO_DEVICE_GET_INFO: {
		struct vfio_device_info info;

		minsz = offsetofend(struct vfio_device_info, num_irqs);
		if (copy_from_user(&info, (void __user *)arg, minsz))
			return -EFAULT;
		if (info.argsz < minsz)
			return -EINVAL;
		info.flags = VFIO_DEVICE_FLAGS_PLATFORM;
		info.num_regions = 1;
		info.num_irqs = 0;
		return copy_to_user((void __user *)arg, &info, minsz) ? -EFAULT : 0;
	}
	case VFIO_DEVICE_GET_REGION_INFO: {
		struct vfio_region_info info;

		minsz = offsetofend(struct vfio_region_info, offset);
		if (copy_from_user(&info, (void __user *)arg, minsz))
			return -EFAULT;
		if (info.argsz < minsz || info.index != 0)
			return -EINVAL;
		info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
		info.cap_offset = 0;
		info.size = PINTEST_REGION_SIZE;
		info.offset = 0;
		return copy_to_user((void __user *)arg, &info, minsz) ? -EFAULT : 0;
	}
	case VFIO_DEVICE_GET_IRQ_INFO:
		return -EINVAL;
	case VFIO_DEVICE_RESET:
		pintest_close_device(vdev);
		return 0;
	}
	return -ENOTTY;
}

static int pintest_init_dev(struct vfio_device *vdev)
{
	mutex_init(&to_state(vdev)->lock);
	return 0;
}

static void pintest_release_dev(struct vfio_device *vdev)
{
	mutex_destroy(&to_state(vdev)->lock);
}

static const struct vfio_device_ops pintest_dev_ops = {
	.name = "vfio-pintest",
	.init = pintest_init_dev,
	.release = pintest_release_dev,
	.read = pintest_read,
	.write = pintest_write,
	.ioctl = pintest_ioctl,
	.dma_unmap = pintest_dma_unmap,
	.close_device = pintest_close_device,
	.bind_iommufd = vfio_iommufd_emulated_bind,
	.unbind_iommufd = vfio_iommufd_emulated_unbind,
	.attach_ioas = vfio_iommufd_emulated_attach_ioas,
	.detach_ioas = vfio_iommufd_emulated_detach_ioas,
};

static int pintest_probe(struct mdev_device *mdev)
{
	struct pintest_state *s;
	int ret;

	s = vfio_alloc_device(pintest_state, vdev, &mdev->dev, &pintest_dev_ops);
	if (IS_ERR(s))
		return PTR_ERR(s);
	s->vdev.log_ops = &pintest_log_ops;
	ret = vfio_register_emulated_iommu_dev(&s->vdev);
	if (ret) {
		vfio_put_device(&s->vdev);
		return ret;
	}
	dev_set_drvdata(&mdev->dev, s);
	return 0;
}

static void pintest_remove(struct mdev_device *mdev)
{
	struct pintest_state *s = dev_get_drvdata(&mdev->dev);

	vfio_unregister_group_dev(&s->vdev);
	vfio_put_device(&s->vdev);
}

static struct mdev_driver pintest_driver = {
	.device_api = VFIO_DEVICE_API_PLATFORM_STRING,
	.max_instances = 16,
	.driver = {
		.name = PINTEST_NAME,
		.owner = THIS_MODULE,
		.mod_name = KBUILD_MODNAME,
	},
	.probe = pintest_probe,
	.remove = pintest_remove,
};

static void pintest_parent_release(struct device *dev)
{
}

static int __init pintest_init(void)
{
	int ret;

	ret = mdev_register_driver(&pintest_driver);
	if (ret)
		return ret;
	pintest_parent.class = class_create(PINTEST_NAME);
	if (IS_ERR(pintest_parent.class)) {
		ret = PTR_ERR(pintest_parent.class);
		goto err_driver;
	}
	pintest_parent.dev.class = pintest_parent.class;
	pintest_parent.dev.release = pintest_parent_release;
	dev_set_name(&pintest_parent.dev, "%s", PINTEST_NAME);
	ret = device_register(&pintest_parent.dev);
	if (ret)
		goto err_put;
	ret = mdev_register_parent(&pintest_parent.parent, &pintest_parent.dev,
				   &pintest_driver, pintest_types,
				   ARRAY_SIZE(pintest_types));
	if (ret)
		goto err_device;
	return 0;

err_device:
	device_del(&pintest_parent.dev);
err_put:
	put_device(&pintest_parent.dev);
	class_destroy(pintest_parent.class);
err_driver:
	mdev_unregister_driver(&pintest_driver);
	return ret;
}

static void __exit pintest_exit(void)
{
	mdev_unregister_parent(&pintest_parent.parent);
	device_unregister(&pintest_parent.dev);
	class_destroy(pintest_parent.class);
	mdev_unregister_driver(&pintest_driver);
}

module_init(pintest_init);
module_exit(pintest_exit);
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS(IOMMUFD);
MODULE_DESCRIPTION("VFIO mdev that pins and DMA-writes pages on request (deno-vmm tests)");
