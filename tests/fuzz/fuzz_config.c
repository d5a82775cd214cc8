/*
 * fuzz_config: libFuzzer harness for the configuration loader (daemon/config over lib/cfgtree).
 *
 * Owns nothing but the checks. The input (cut at the first NUL, as a file's text would be read) goes
 * through config_load_string, so libyaml, the tree builder and every section reader see it. The
 * contract is checked: success gives a Config and no errors, failure gives DR_ECONFIG, no Config and
 * at least one "NAME:LINE:COL: message" line. A loaded Config is also put through the deep copies a
 * reload makes (backup, scenarios) and freed, so LeakSanitizer sees every path. The scenarios'
 * own sections are registered first, as drsupervisord does, so their readers are fuzzed too. The
 * loader checks the backup key file as it reads it: FUZZ_CONFIG_KEY is made first (0600, a valid
 * key) and the seeds name it, so a backup section can load.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "err.h"
#include "scenario/scenario.h"

#define FUZZ_CONFIG_KEY "/tmp/drsup-fuzz-config.key"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (scenario_register_config() < 0)
        abort();
    static const char key[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%s.%ld", FUZZ_CONFIG_KEY, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, key, sizeof(key) - 1) != (ssize_t)(sizeof(key) - 1) || close(fd) != 0 ||
        rename(tmp, FUZZ_CONFIG_KEY) != 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Config *cfg = NULL;
    char *errors = NULL;

    if (size > 256 * 1024)
        return -1;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    int r = config_load_string("fuzz.yaml", text, &cfg, &errors);
    if (r == 0) {
        if (!cfg || errors)
            abort();
        ConfigBackup b;
        ConfigScenarios s;
        if (config_backup_copy(&cfg->backup, &b) == 0)
            config_backup_free(&b);
        if (config_scenarios_copy(&cfg->scenarios, &s) == 0)
            config_scenarios_free(&s);
    } else {
        if (r != DR_ECONFIG || cfg || !errors || strncmp(errors, "fuzz.yaml:", 10) != 0)
            abort();
    }
    if (config_free(cfg) != NULL)
        abort();
    free(errors);
    free(text);
    return 0;
}
