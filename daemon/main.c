/* placeholder, replaced below */
#include <stdio.h>
int main(void) { puts("drsupervisord"); return 0; }
