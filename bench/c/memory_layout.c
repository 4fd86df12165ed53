/* Prints the userfaultfd and PAGEMAP_SCAN ABI facts memory/ relies on, as
 * JSON, for memory/uapi_layout_test.ts to compare with memory/_uapi.ts. */
#include <stddef.h>
#include <stdio.h>
#include <sys/syscall.h>

#include "uapi_compat.h"

#define NUM(name) printf("  \"%s\": %llu,\n", #name, (unsigned long long)(name))
#define OFF(type, field) \
	printf("  \"offsetof(%s.%s)\": %zu,\n", #type, #field, offsetof(struct type, field))
#define SIZE(type) printf("  \"sizeof(%s)\": %zu,\n", #type, sizeof(struct type))

int main(void)
{
	printf("{\n");
	NUM(__NR_userfaultfd);
	NUM(UFFD_API);
	NUM(UFFD_USER_MODE_ONLY);
	NUM(UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
	NUM(UFFD_FEATURE_WP_UNPOPULATED);
	NUM(UFFD_FEATURE_WP_ASYNC);
	NUM(UFFDIO_API);
	NUM(UFFDIO_REGISTER);
	NUM(UFFDIO_UNREGISTER);
	NUM(UFFDIO_WRITEPROTECT);
	NUM(UFFDIO_REGISTER_MODE_WP);
	NUM(UFFDIO_WRITEPROTECT_MODE_WP);
	NUM(USERFAULTFD_IOC_NEW);
	NUM(PAGEMAP_SCAN);
	NUM(PAGE_IS_WRITTEN);
	NUM(PM_SCAN_WP_MATCHING);
	NUM(PM_SCAN_CHECK_WPASYNC);
	SIZE(uffdio_api);
	OFF(uffdio_api, api);
	OFF(uffdio_api, features);
	OFF(uffdio_api, ioctls);
	SIZE(uffdio_range);
	SIZE(uffdio_register);
	OFF(uffdio_register, range);
	OFF(uffdio_register, mode);
	OFF(uffdio_register, ioctls);
	SIZE(uffdio_writeprotect);
	OFF(uffdio_writeprotect, range);
	OFF(uffdio_writeprotect, mode);
	SIZE(page_region);
	OFF(page_region, start);
	OFF(page_region, end);
	OFF(page_region, categories);
	SIZE(pm_scan_arg);
	OFF(pm_scan_arg, size);
	OFF(pm_scan_arg, flags);
	OFF(pm_scan_arg, start);
	OFF(pm_scan_arg, end);
	OFF(pm_scan_arg, walk_end);
	OFF(pm_scan_arg, vec);
	OFF(pm_scan_arg, vec_len);
	OFF(pm_scan_arg, max_pages);
	OFF(pm_scan_arg, category_inverted);
	OFF(pm_scan_arg, category_mask);
	OFF(pm_scan_arg, category_anyof_mask);
	OFF(pm_scan_arg, return_mask);
	printf("  \"end\": 0\n}\n");
	return 0;
}
