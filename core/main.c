/* placeholder main: being written */
int main(void) { return 0; }
