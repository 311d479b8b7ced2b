export default {
  async 'Кировка АвтоматическоеПолучениеТаблицыМарокПоТаймеру'(ctx) {
    await ctx.log('INFO', 'tick');
  },
};
