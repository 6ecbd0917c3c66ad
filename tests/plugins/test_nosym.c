/*
 * test_nosym.c - a shared object that is not a katomon plugin: it has no
 * km_plugin_descriptor symbol. The loader must refuse it with one line.
 */
#include <katomon/plugin.h>

/* Something exported, so the object is not empty. */
KM_EXPORT int test_nosym_answer(void);

KM_EXPORT int test_nosym_answer(void)
{
    return 42;
}
